output "tenant_url_pattern" {
  description = "Where tenants are reached."
  value       = "https://<slug>.${var.tenant_base_domain}"
}

output "api_url" {
  description = "Base URL of the control-plane API (bearer token from `tenantctl tokens create`)."
  value       = "https://${module.edge.api_host}"
}

output "billing_webhook_url" {
  description = "Webhook endpoint to configure in the billing provider."
  value       = module.edge.billing_webhook_url
}

output "router_database_url_secret_name" {
  description = "Secret to put the routers' DATABASE_URL in (from `tenantctl routers credentials`; before the routers can start)."
  value       = module.secrets.router_database_url_secret_name
}

output "billing_webhook_secret_name" {
  description = "Secret to put the billing provider's signing secret in (before the control plane can start)."
  value       = module.secrets.billing_webhook_secret_name
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point *.<tenant_base_domain> and the API host at it when DNS is not in Route 53)."
  value       = module.edge.alb_dns_name
}

output "certificate_validation_records" {
  description = "DNS records that validate the wildcard certificate."
  value       = module.edge.certificate_validation_records
}

output "ecs_cluster_name" {
  description = "ECS cluster of both services."
  value       = aws_ecs_cluster.this.name
}

output "router_service_name" {
  description = "ECS service of tenant-router."
  value       = module.router.service_name
}

output "control_plane_service_name" {
  description = "ECS service of tenantctl serve (ECS Exec is enabled on it)."
  value       = module.control_plane.service_name
}

output "database_endpoint" {
  description = "Writer endpoint of the catalog's Aurora cluster (the `default` cluster)."
  value       = module.database.endpoint
}

output "database_url_secret_arn" {
  description = "Secret holding DATABASE_URL."
  value       = module.database.url_secret_arn
}

output "secrets_prefix" {
  description = "SECRETS_PREFIX of the deployment."
  value       = module.secrets.secrets_prefix
}

output "kms_key_arn" {
  description = "The deployment's KMS key."
  value       = module.secrets.kms_key_arn
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.observability.alarm_topic_arn
}

output "dedicated_tenant_clusters" {
  description = "Per dedicated cluster: its endpoint and the command that registers it with the control plane."
  value = {
    for k, m in module.tenant_database : k => {
      endpoint         = m.endpoint
      register_command = m.register_command
    }
  }
}

output "postgres_endpoint" {
  description = "Where PostgreSQL clients connect (null without the PostgreSQL door): the tenant is the database name, the user its role, TLS verified against the router's certificate."
  value       = var.enable_postgres_door ? "postgres://<tenant role>@${local.postgres_host}:${var.router_pg_port}/<tenant slug>?sslmode=verify-full" : null
}

output "postgres_nlb_dns_name" {
  description = "DNS name of the PostgreSQL NLB (point the PostgreSQL host at it when DNS is not in Route 53); null without the PostgreSQL door."
  value       = one(module.postgres_door[*].nlb_dns_name)
}

output "router_tls_secret_names" {
  description = "Secrets to put the PostgreSQL listener's certificate chain and key in, PEM (before the routers can start with the PostgreSQL door)."
  value       = module.secrets.router_tls_secret_names
}

output "tenant_url_pattern" {
  description = "Where tenants are reached."
  value       = module.stack.tenant_url_pattern
}

output "api_url" {
  description = "Base URL of the control-plane API (bearer token from `tenantctl tokens create`)."
  value       = module.stack.api_url
}

output "billing_webhook_url" {
  description = "Webhook endpoint to configure in the billing provider."
  value       = module.stack.billing_webhook_url
}

output "router_database_url_secret_name" {
  description = "Secret to put the routers' DATABASE_URL in (from `tenantctl routers credentials`)."
  value       = module.stack.router_database_url_secret_name
}

output "billing_webhook_secret_name" {
  description = "Secret to put the billing provider's signing secret in (before the control plane can start)."
  value       = module.stack.billing_webhook_secret_name
}

output "alb_dns_name" {
  description = "DNS name of the ALB (point *.<tenant_base_domain> and the API host at it when DNS is not in Route 53)."
  value       = module.stack.alb_dns_name
}

output "certificate_validation_records" {
  description = "DNS records that validate the wildcard certificate."
  value       = module.stack.certificate_validation_records
}

output "ecs_cluster_name" {
  description = "ECS cluster of both services."
  value       = module.stack.ecs_cluster_name
}

output "router_service_name" {
  description = "ECS service of tenant-router."
  value       = module.stack.router_service_name
}

output "control_plane_service_name" {
  description = "ECS service of tenantctl serve (ECS Exec is enabled on it)."
  value       = module.stack.control_plane_service_name
}

output "database_endpoint" {
  description = "Writer endpoint of the catalog's Aurora cluster (the `default` cluster)."
  value       = module.stack.database_endpoint
}

output "database_url_secret_arn" {
  description = "Secret holding DATABASE_URL."
  value       = module.stack.database_url_secret_arn
}

output "secrets_prefix" {
  description = "SECRETS_PREFIX of the deployment."
  value       = module.stack.secrets_prefix
}

output "kms_key_arn" {
  description = "The deployment's KMS key."
  value       = module.stack.kms_key_arn
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.stack.alarm_topic_arn
}

output "dedicated_tenant_clusters" {
  description = "Per dedicated cluster: its endpoint and the command that registers it with the control plane."
  value       = module.stack.dedicated_tenant_clusters
}

output "postgres_endpoint" {
  description = "Where PostgreSQL clients connect (null without the PostgreSQL door)."
  value       = module.stack.postgres_endpoint
}

output "postgres_nlb_dns_name" {
  description = "DNS name of the PostgreSQL NLB (point the PostgreSQL host at it when DNS is not in Route 53)."
  value       = module.stack.postgres_nlb_dns_name
}

output "router_tls_secret_names" {
  description = "Secrets to put the PostgreSQL listener's certificate chain and key in (with the PostgreSQL door)."
  value       = module.stack.router_tls_secret_names
}

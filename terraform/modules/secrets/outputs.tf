output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key."
  value       = aws_kms_key.this.arn
}

output "secrets_prefix" {
  description = "SECRETS_PREFIX to give both binaries."
  value       = var.secrets_prefix
}

output "service_secret_name_prefix" {
  description = "Name prefix of the secrets terraform manages for the services (<prefix>/service)."
  value       = "${var.secrets_prefix}/service"
}

output "tenant_secrets_arn_pattern" {
  description = "ARN pattern of the tenant credentials secrets tenantctl creates (<prefix>/tenants/<tenant-id>/postgres)."
  value       = "${local.secret_arn_base}/tenants/*"
}

output "cluster_secrets_arn_pattern" {
  description = "ARN pattern of the admin connections of registered clusters (<prefix>/clusters/<name>/admin)."
  value       = "${local.secret_arn_base}/clusters/*"
}

output "service_secrets_arn_pattern" {
  description = "ARN pattern of the secrets terraform manages for the services (<prefix>/service/...)."
  value       = "${local.secret_arn_base}/service/*"
}

output "billing_webhook_secret_arn" {
  description = "ARN of the BILLING_WEBHOOK_SECRET secret (its value is put by the operator)."
  value       = aws_secretsmanager_secret.billing_webhook.arn
}

output "billing_webhook_secret_name" {
  description = "Name of the BILLING_WEBHOOK_SECRET secret, for `aws secretsmanager put-secret-value`."
  value       = aws_secretsmanager_secret.billing_webhook.name
}

output "router_records_key_secret_arn" {
  description = "ARN of the ROUTER_RECORDS_KEY secret (read from its version, so a task definition using it waits for the value)."
  value       = aws_secretsmanager_secret_version.records_key.arn
}

output "router_database_url_secret_arn" {
  description = "ARN of the routers' DATABASE_URL secret (its value is put by the operator from `tenantctl routers credentials`)."
  value       = aws_secretsmanager_secret.router_database_url.arn
}

output "router_database_url_secret_name" {
  description = "Name of the routers' DATABASE_URL secret, for `aws secretsmanager put-secret-value`."
  value       = aws_secretsmanager_secret.router_database_url.name
}

output "router_tls_certificate_secret_arn" {
  description = "ARN of the ROUTER_TLS_CERT secret (the PostgreSQL listener's certificate chain; put by the operator), or null without the PostgreSQL door."
  value       = one(aws_secretsmanager_secret.router_tls_certificate[*].arn)
}

output "router_tls_key_secret_arn" {
  description = "ARN of the ROUTER_TLS_KEY secret (the PostgreSQL listener's private key; put by the operator), or null without the PostgreSQL door."
  value       = one(aws_secretsmanager_secret.router_tls_key[*].arn)
}

output "router_tls_secret_names" {
  description = "Names of the certificate and key secrets, for `aws secretsmanager put-secret-value` (empty without the PostgreSQL door)."
  value = merge(
    { for s in aws_secretsmanager_secret.router_tls_certificate : "certificate" => s.name },
    { for s in aws_secretsmanager_secret.router_tls_key : "key" => s.name },
  )
}

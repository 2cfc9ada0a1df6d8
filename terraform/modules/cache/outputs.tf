output "replication_group_id" {
  description = "ID of the replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "primary_endpoint_address" {
  description = "Primary endpoint (TLS only)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "security_group_id" {
  description = "Security group of the replication group."
  value       = aws_security_group.this.id
}

output "url_secret_arn" {
  description = "ARN of the secret holding REDIS_URL (read from its version, so a task definition using it waits for the value)."
  value       = aws_secretsmanager_secret_version.url.arn
}

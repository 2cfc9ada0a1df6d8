output "cluster_identifier" {
  description = "Identifier of the Aurora cluster."
  value       = aws_rds_cluster.this.cluster_identifier
}

output "cluster_arn" {
  description = "ARN of the Aurora cluster."
  value       = aws_rds_cluster.this.arn
}

output "endpoint" {
  description = "Writer endpoint."
  value       = aws_rds_cluster.this.endpoint
}

output "reader_endpoint" {
  description = "Reader endpoint."
  value       = aws_rds_cluster.this.reader_endpoint
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_rds_cluster.this.port
}

output "database_name" {
  description = "The database created with the cluster."
  value       = var.database_name
}

output "security_group_id" {
  description = "Security group of the cluster."
  value       = aws_security_group.this.id
}

output "url_secret_arn" {
  description = "ARN of the secret holding the admin connection URL (read from its version, so a task definition using it waits for the value)."
  value       = aws_secretsmanager_secret_version.url.arn
}

output "url_secret_name" {
  description = "Name of the secret holding the admin connection URL."
  value       = aws_secretsmanager_secret.url.name
}

output "arn" {
  description = "ARN of the task definition revision."
  value       = aws_ecs_task_definition.this.arn
}

output "family" {
  description = "Family of the task definition (run-task accepts it for the latest revision)."
  value       = aws_ecs_task_definition.this.family
}

output "container_name" {
  description = "Name of the container."
  value       = var.container_name
}

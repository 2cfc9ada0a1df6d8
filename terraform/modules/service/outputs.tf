output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "security_group_id" {
  description = "Security group of the tasks (give it access to PostgreSQL and Redis)."
  value       = aws_security_group.this.id
}

output "task_definition_arn" {
  description = "ARN of the current task definition revision."
  value       = module.task.arn
}

output "task_definition_family" {
  description = "Family of the task definition (for one-off `aws ecs run-task`)."
  value       = module.task.family
}

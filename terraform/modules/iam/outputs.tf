output "router_task_role_arn" {
  description = "Task role of tenant-router (reads tenant secrets)."
  value       = aws_iam_role.router_task.arn
}

output "router_execution_role_arn" {
  description = "Execution role of tenant-router tasks."
  value       = aws_iam_role.execution["router"].arn
}

output "control_plane_task_role_arn" {
  description = "Task role of tenantctl (creates, updates, restores and deletes tenant and cluster secrets)."
  value       = aws_iam_role.control_plane_task.arn
}

output "control_plane_execution_role_arn" {
  description = "Execution role of tenantctl serve tasks."
  value       = aws_iam_role.execution["control-plane"].arn
}

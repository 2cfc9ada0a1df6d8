output "router_log_group_name" {
  description = "Log group of tenant-router."
  value       = aws_cloudwatch_log_group.router.name
}

output "router_log_group_arn" {
  description = "ARN of the router's log group."
  value       = aws_cloudwatch_log_group.router.arn
}

output "control_plane_log_group_name" {
  description = "Log group of tenantctl."
  value       = aws_cloudwatch_log_group.control_plane.name
}

output "control_plane_log_group_arn" {
  description = "ARN of the control plane's log group."
  value       = aws_cloudwatch_log_group.control_plane.arn
}

output "exec_sessions_log_group_name" {
  description = "Log group of ECS Exec sessions."
  value       = aws_cloudwatch_log_group.exec_sessions.name
}

output "exec_sessions_log_group_arn" {
  description = "ARN of the ECS Exec sessions' log group."
  value       = aws_cloudwatch_log_group.exec_sessions.arn
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "cluster_name" {
  description = "Name the control plane knows the cluster by."
  value       = var.cluster_name
}

output "endpoint" {
  description = "Writer endpoint of the dedicated cluster."
  value       = module.cluster.endpoint
}

output "admin_url_secret_arn" {
  description = "Secret holding the cluster's admin URL (CLUSTER_ADMIN_URL of the registration task)."
  value       = module.cluster.url_secret_arn
}

output "registration_task_definition" {
  description = "Family of the one-off task that runs `tenantctl clusters add` for this cluster."
  value       = module.registration.family
}

output "register_command" {
  description = "The AWS CLI command that registers the cluster with the control plane (run it once, after apply)."
  value = join(" ", [
    "aws ecs run-task",
    "--cluster ${var.ecs_cluster_name}",
    "--launch-type FARGATE",
    "--task-definition ${module.registration.family}",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", var.subnet_ids)}],securityGroups=[${var.task_security_group_id}],assignPublicIp=DISABLED}'",
  ])
}

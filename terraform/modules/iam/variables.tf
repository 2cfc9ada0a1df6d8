variable "name" {
  description = "Name prefix of the roles (e.g. tenancy-production)."
  type        = string
}

variable "secrets_prefix" {
  description = "SECRETS_PREFIX of both binaries; the task roles are scoped to <prefix>/tenants/* and <prefix>/clusters/*."
  type        = string
}

variable "kms_key_arn" {
  description = "The deployment's KMS key (the service secrets and ECS Exec sessions are encrypted with it)."
  type        = string
}

variable "router_secret_arns" {
  description = "Secrets the router's execution role reads to start the task (DATABASE_URL, REDIS_URL)."
  type        = list(string)
}

variable "control_plane_secret_arns" {
  description = "Secrets the control plane's execution role reads to start the task (DATABASE_URL, REDIS_URL, BILLING_WEBHOOK_SECRET)."
  type        = list(string)
}

variable "router_log_group_arn" {
  description = "Log group the router's containers write to."
  type        = string
}

variable "control_plane_log_group_arn" {
  description = "Log group the control plane's containers write to."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the image is pulled from (empty when the image is in a public registry)."
  type        = list(string)
  default     = []
}

variable "exec_sessions_log_group_arn" {
  description = "Log group ECS Exec sessions are recorded in (written by the task role)."
  type        = string
}

variable "control_plane_execute_command" {
  description = "Let operators open ECS Exec sessions in the control plane's containers (to run tenantctl commands)."
  type        = bool
  default     = true
}

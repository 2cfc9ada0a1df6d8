variable "name" {
  description = "Name prefix of every resource (e.g. tenancy-production)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the log groups and the alarm topic."
  type        = string
}

variable "log_retention_days" {
  description = "Days the services' logs are kept."
  type        = number
  default     = 365
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the ALB."
  type        = string
}

variable "router_target_group_arn_suffix" {
  description = "ARN suffix of the router's target group."
  type        = string
}

variable "control_plane_target_group_arn_suffix" {
  description = "ARN suffix of the control plane's target group."
  type        = string
}

variable "router_5xx_threshold" {
  description = "5xx answers from routers in 5 minutes that raise the alarm."
  type        = number
  default     = 50
}

variable "control_plane_5xx_threshold" {
  description = "5xx answers from the control plane in 5 minutes that raise the alarm."
  type        = number
  default     = 5
}

variable "pool_exhausted_threshold" {
  description = "503 pool_exhausted answers of the routers per minute which, 3 minutes running, raise the alarm."
  type        = number
  default     = 10
}

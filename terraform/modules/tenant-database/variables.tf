variable "name" {
  description = "Name prefix of the deployment (e.g. tenancy-production); the Aurora cluster is <name>-<cluster_name>."
  type        = string
}

variable "cluster_name" {
  description = "Name the control plane registers the cluster under (`tenantctl clusters add --name`): 1 to 63 characters of a-z, 0-9 and '-', starting with a letter."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.cluster_name))
    error_message = "cluster_name must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "capacity" {
  description = "Most tenants the control plane places on this cluster (`--capacity`); 1 for a cluster dedicated to one enterprise tenant."
  type        = number
  default     = 1
}

variable "secrets_prefix" {
  description = "SECRETS_PREFIX of the deployment; the admin URL is kept at <prefix>/service/clusters/<cluster_name>/admin-url until registration copies it to <prefix>/clusters/<cluster_name>/admin."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the deployment."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cluster and of the registration task."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect (the router's and the control plane's)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "The deployment's KMS key."
  type        = string
}

variable "engine_version" {
  description = "Aurora PostgreSQL version."
  type        = string
  default     = "16.4"
}

variable "min_capacity" {
  description = "Serverless v2 minimum ACUs."
  type        = number
  default     = 0.5
}

variable "max_capacity" {
  description = "Serverless v2 maximum ACUs."
  type        = number
  default     = 16
}

variable "instance_count" {
  description = "Serverless v2 instances (writer plus failover readers)."
  type        = number
  default     = 2
}

variable "backup_retention_days" {
  description = "Days of automated backups."
  type        = number
  default     = 14
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster."
  type        = bool
  default     = true
}

variable "image" {
  description = "Image of tenantctl (the one the control plane runs)."
  type        = string
}

variable "environment" {
  description = "Plain environment of the registration task: the control plane's shared settings (SECRETS_BACKEND, SECRETS_PREFIX, AWS_REGION, TENANT_ROLE_PREFIX, LOG_FORMAT); names `tenantctl clusters add --help` lists."
  type        = map(string)
}

variable "catalog_url_secret_arn" {
  description = "Secret holding the catalog's DATABASE_URL."
  type        = string
}

variable "control_plane_task_role_arn" {
  description = "Task role of the control plane (may create <prefix>/clusters/* secrets)."
  type        = string
}

variable "log_group_name" {
  description = "Log group of the registration task (the control plane's)."
  type        = string
}

variable "log_group_arn" {
  description = "ARN of that log group."
  type        = string
}

variable "ecs_cluster_name" {
  description = "ECS cluster the registration task runs in."
  type        = string
}

variable "task_security_group_id" {
  description = "Security group of the registration task (the control plane's: it reaches the catalog, this cluster and Secrets Manager)."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the image is pulled from (empty for a public registry)."
  type        = list(string)
  default     = []
}

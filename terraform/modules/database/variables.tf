variable "name" {
  description = "Cluster identifier and name prefix (e.g. tenancy-production)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (at least two availability zones) of the DB subnet group."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect on the PostgreSQL port (the router's and the control plane's)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for storage, Performance Insights, logs and the URL secret."
  type        = string
}

variable "engine_version" {
  description = "Aurora PostgreSQL version (Serverless v2 capable). pg_dump in the image must be of this major version or newer."
  type        = string
  default     = "16.4"
}

variable "min_capacity" {
  description = "Serverless v2 minimum capacity in ACUs (1 ACU is about 2 GiB of memory)."
  type        = number
  default     = 0.5
}

variable "max_capacity" {
  description = "Serverless v2 maximum capacity in ACUs; max_connections follows the memory at the maximum."
  type        = number
  default     = 16
}

variable "instance_count" {
  description = "Serverless v2 instances: 1 writer plus readers that fail over (2 or more for production)."
  type        = number
  default     = 2

  validation {
    condition     = var.instance_count >= 1
    error_message = "instance_count must be at least 1."
  }
}

variable "database_name" {
  description = "Database created with the cluster (the catalog: tenancy; a dedicated tenant cluster: tenants)."
  type        = string
  default     = "tenancy"
}

variable "master_username" {
  description = "Master user: the control plane's admin role (creates tenant roles, schemas and databases)."
  type        = string
  default     = "tenancy_admin"
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window), 1 to 35."
  type        = number
  default     = 14
}

variable "preferred_backup_window" {
  description = "Daily backup window (UTC)."
  type        = string
  default     = "03:00-04:00"
}

variable "preferred_maintenance_window" {
  description = "Weekly maintenance window (UTC); must not overlap the backup window."
  type        = string
  default     = "sun:04:30-sun:05:30"
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster (turn off deliberately, in its own apply, before destroying)."
  type        = bool
  default     = true
}

variable "max_locks_per_transaction" {
  description = "Lock table slots per transaction. Many schemas means many relations per catalog query and per fleet migration transaction (`tenantctl migrate plan` shows the headroom). Takes effect after a reboot."
  type        = number
  default     = 1024
}

variable "max_connections" {
  description = "max_connections, or null for Aurora's default (derived from the memory at max_capacity). Budget: routers x ROUTER_MAX_CONNECTIONS + control planes' pools + migrations."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Days the PostgreSQL log in CloudWatch Logs is kept."
  type        = number
  default     = 365
}

variable "url_secret_name" {
  description = "Name of the Secrets Manager secret holding the admin connection URL (postgres://user:password@endpoint:5432/database?sslmode=verify-full)."
  type        = string
}

variable "secret_recovery_window_in_days" {
  description = "Days a deleted URL secret stays recoverable (7 to 30)."
  type        = number
  default     = 30
}

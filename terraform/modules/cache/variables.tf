variable "name" {
  description = "Replication group ID and name prefix (e.g. tenancy-production)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the replication group."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (at least two availability zones)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect on the Redis port (the router's and the control plane's)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for encryption at rest, the slow log and the URL secret."
  type        = string
}

variable "engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "node_type" {
  description = "Cache node type (routing records and invalidation messages are small)."
  type        = string
  default     = "cache.t4g.small"
}

variable "num_cache_clusters" {
  description = "Nodes: one primary plus 1 to 5 replicas in other availability zones, with automatic failover."
  type        = number
  default     = 2

  validation {
    condition     = var.num_cache_clusters >= 2 && var.num_cache_clusters <= 6
    error_message = "num_cache_clusters must be between 2 and 6 (Multi-AZ failover needs a replica)."
  }
}

variable "snapshot_retention_limit" {
  description = "Days of daily snapshots (the cache can be rebuilt from the catalog; snapshots only speed up recovery)."
  type        = number
  default     = 1
}

variable "log_retention_days" {
  description = "Days the Redis slow log is kept in CloudWatch Logs."
  type        = number
  default     = 365
}

variable "url_secret_name" {
  description = "Name of the Secrets Manager secret holding REDIS_URL (rediss://:<auth token>@<primary endpoint>:6379)."
  type        = string
}

variable "secret_recovery_window_in_days" {
  description = "Days a deleted URL secret stays recoverable (7 to 30)."
  type        = number
  default     = 30
}

variable "name" {
  description = "Name prefix of every resource (e.g. tenancy-production)."
  type        = string
}

variable "secrets_prefix" {
  description = "SECRETS_PREFIX of both binaries: tenant credentials are <prefix>/tenants/<tenant-id>/postgres, registered clusters' admin connections <prefix>/clusters/<name>/admin; the secrets terraform manages for the services live under <prefix>/service/."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,128}$", var.secrets_prefix)) && !startswith(var.secrets_prefix, "/") && !endswith(var.secrets_prefix, "/")
    error_message = "secrets_prefix must be 1 to 128 characters of A-Z a-z 0-9 / _ + = . @ - without a leading or trailing '/' (what tenantctl accepts)."
  }
}

variable "recovery_window_in_days" {
  description = "Days a deleted service secret stays recoverable (7 to 30)."
  type        = number
  default     = 30
}

variable "key_deletion_window_in_days" {
  description = "Days before a scheduled deletion of the KMS key takes effect (7 to 30)."
  type        = number
  default     = 30
}

variable "router_postgres_tls" {
  description = "Create the secrets of the routers' PostgreSQL listener certificate and key (with the PostgreSQL door)."
  type        = bool
  default     = false
}

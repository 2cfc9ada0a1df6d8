variable "name" {
  description = "Name prefix of every resource (e.g. tenancy-production); at most 25 characters (target group names)."
  type        = string

  validation {
    condition     = length(var.name) <= 25
    error_message = "name must be at most 25 characters (ALB target group names, <name>-router, are limited to 32)."
  }
}

variable "vpc_id" {
  description = "VPC of the ALB."
  type        = string
}

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC (the ALB only sends to targets inside it)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets of the ALB (two or more availability zones)."
  type        = list(string)
}

variable "tenant_base_domain" {
  description = "TENANT_BASE_DOMAIN: tenants are <slug>.<this>; the certificate is *.<this> and the host rule *.<this> goes to the router."
  type        = string
}

variable "api_host" {
  description = "Host name of the control-plane API and billing webhook; null means api.<tenant_base_domain> (`api` is a reserved slug, so no tenant can take it)."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone that holds the domain: certificate validation and the ALB alias records are created there. null when DNS is elsewhere (see the README for the two-step apply)."
  type        = string
  default     = null
}

variable "router_port" {
  description = "ROUTER_LISTEN port of tenant-router."
  type        = number
  default     = 8081
}

variable "router_health_port" {
  description = "ROUTER_ADMIN_LISTEN port of tenant-router (/healthz for the ALB health check)."
  type        = number
  default     = 9091
}

variable "control_plane_port" {
  description = "TENANTCTL_LISTEN port of tenantctl serve."
  type        = number
  default     = 8080
}

variable "operator_cidrs" {
  description = "Source ranges allowed to reach the operator API (/v1/...) on the API host, at most 4; empty allows any source (the API still requires a bearer token). The billing webhook path is always reachable."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.operator_cidrs) <= 4
    error_message = "At most 4 operator CIDRs (an ALB rule takes 5 condition values, one is the host)."
  }
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes one client IP may make before WAF blocks it: a flood guard above the busiest tenant server's rate (plans have their own per-tenant rate limits in the router)."
  type        = number
  default     = 100000
}

variable "kms_key_arn" {
  description = "KMS key of the WAF log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days WAF logs (CloudWatch) and ALB access logs (S3) are kept."
  type        = number
  default     = 365
}

variable "deletion_protection" {
  description = "Refuse to delete the ALB."
  type        = bool
  default     = true
}

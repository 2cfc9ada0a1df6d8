# What differs from one installation to another; set in terraform.tfvars (see
# terraform.tfvars.example). The environment's sizes are in main.tf.

variable "image" {
  description = "Image URI of the repository's Dockerfile, pinned by tag or digest (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/tenancy:1.4.2)."
  type        = string
}

variable "tenant_base_domain" {
  description = "TENANT_BASE_DOMAIN: tenants are reached at <slug>.<this> (e.g. db.example.com)."
  type        = string
}

variable "region" {
  description = "AWS region (also AWS_REGION of the services)."
  type        = string
  default     = "eu-west-1"
}

variable "availability_zones" {
  description = "Availability zones of the subnets (2 to 4 of the region's; change them with the region)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of the domain (certificate validation and ALB alias records); null when DNS is managed elsewhere."
  type        = string
  default     = null
}

variable "api_host" {
  description = "Host of the control-plane API and billing webhook; null means api.<tenant_base_domain>."
  type        = string
  default     = null
}

variable "operator_cidrs" {
  description = "Source ranges allowed to reach the operator API (at most 4); empty allows any source (bearer tokens still required). The billing webhook is always reachable."
  type        = list(string)
  default     = []
}

variable "ecr_repository_arns" {
  description = "ECR repositories of the image (the execution roles may pull from these only)."
  type        = list(string)
  default     = []
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: the platform the image was built for."
  type        = string
  default     = "X86_64"
}

variable "alarm_emails" {
  description = "Addresses that receive the alarms."
  type        = list(string)
  default     = []
}

variable "router_upstream" {
  description = "ROUTER_UPSTREAM: the application every path but /sql is forwarded to (null: none)."
  type        = string
  default     = null
}

variable "router_additional_egress" {
  description = "Outbound destinations of the routers beyond AWS APIs, PostgreSQL and Redis (e.g. the ROUTER_UPSTREAM application)."
  type = list(object({
    description = string
    cidr        = string
    port        = number
  }))
  default = []
}

variable "dedicated_tenant_clusters" {
  description = "Dedicated Aurora clusters for enterprise tenants, by cluster name (`tenantctl clusters add --name`)."
  type = map(object({
    capacity       = optional(number, 1)
    min_capacity   = optional(number, 0.5)
    max_capacity   = optional(number, 16)
    instance_count = optional(number, 2)
  }))
  default = {}
}

variable "enable_postgres_door" {
  description = "Serve PostgreSQL clients (psql, drivers, ORMs) through an NLB on port 6432. The routers start with it only once the certificate and key are in the secrets it creates (router_tls_secret_names output; see the README)."
  type        = bool
  default     = false
}

variable "postgres_host" {
  description = "Host name PostgreSQL clients connect to (the certificate must name it); null means postgres.<tenant_base_domain>."
  type        = string
  default     = null
}

variable "postgres_client_cidrs" {
  description = "Source ranges allowed to reach the PostgreSQL door besides the VPC itself; empty: the VPC only."
  type        = list(string)
  default     = []
}

variable "postgres_internet_facing" {
  description = "An internet-facing PostgreSQL NLB (clients from postgres_client_cidrs over the internet); false: internal."
  type        = bool
  default     = false
}

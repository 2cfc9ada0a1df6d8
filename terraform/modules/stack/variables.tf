# ---------------------------------------------------------------- required ---

variable "image" {
  description = "Image URI of the repository's Dockerfile, pinned by tag or digest (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/tenancy:1.4.2)."
  type        = string
}

variable "tenant_base_domain" {
  description = "TENANT_BASE_DOMAIN: tenants are reached at <slug>.<this> (e.g. db.example.com)."
  type        = string
}

# ---------------------------------------------------------------- environment ---

variable "environment" {
  description = "Environment name; resources are named tenancy-<environment>."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.environment))
    error_message = "environment: 1 to 20 characters, a-z, 0-9 and -, starting with a letter (it names every resource)."
  }
}

variable "region" {
  description = "AWS region (also AWS_REGION of the services)."
  type        = string
  default     = "eu-west-1"
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

variable "secrets_prefix" {
  description = "SECRETS_PREFIX: tenant secrets are <prefix>/tenants/<tenant-id>/postgres; null means tenancy/<environment>."
  type        = string
  default     = null
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

variable "deletion_protection" {
  description = "Deletion protection of the Aurora clusters and the ALB."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Days logs are kept (services, VPC flow logs, PostgreSQL, Redis, WAF, ALB)."
  type        = number
  default     = 365
}

variable "waf_rate_limit" {
  description = "Requests per 5 minutes per client IP before WAF blocks it (a flood guard; plans have their own rate limits in the router)."
  type        = number
  default     = 100000
}

# ---------------------------------------------------------------- PostgreSQL door ---

variable "enable_postgres_door" {
  description = "Serve PostgreSQL clients (psql, drivers, ORMs) through an NLB on router_pg_port. Before the routers can start with it, put the certificate and key in the secrets it creates (router_tls_secret_names output; see the README)."
  type        = bool
  default     = false
}

variable "postgres_host" {
  description = "Host name PostgreSQL clients connect to (ROUTER_PG_HOST; the certificate must name it); null means postgres.<tenant_base_domain> (`postgres` is a reserved slug)."
  type        = string
  default     = null
}

variable "postgres_client_cidrs" {
  description = "Source ranges allowed to reach the PostgreSQL door besides the VPC itself; empty: the VPC only."
  type        = list(string)
  default     = []
}

variable "postgres_internet_facing" {
  description = "Put the PostgreSQL NLB in the public subnets with public addresses (clients from postgres_client_cidrs over the internet); false: an internal NLB."
  type        = bool
  default     = false
}

variable "router_pg_port" {
  description = "Port of the PostgreSQL door: the NLB's TCP listener and the routers' ROUTER_PG_LISTEN."
  type        = number
  default     = 6432
}

# ---------------------------------------------------------------- network ---

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC."
  type        = string
  default     = "10.41.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones of the subnets (2 to 4 of the region's; change them with the region)."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b"]
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per availability zone."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- database ---

variable "database_engine_version" {
  description = "Aurora PostgreSQL version of the catalog cluster and of dedicated tenant clusters."
  type        = string
  default     = "16.4"
}

variable "database_min_capacity" {
  description = "Serverless v2 minimum ACUs of the catalog cluster."
  type        = number
  default     = 0.5
}

variable "database_max_capacity" {
  description = "Serverless v2 maximum ACUs of the catalog cluster (max_connections follows it)."
  type        = number
  default     = 8
}

variable "database_instance_count" {
  description = "Aurora instances (writer plus failover readers)."
  type        = number
  default     = 1
}

variable "database_backup_retention_days" {
  description = "Days of automated backups."
  type        = number
  default     = 7
}

variable "database_max_locks_per_transaction" {
  description = "max_locks_per_transaction (many schemas; see `tenantctl migrate plan` headroom)."
  type        = number
  default     = 1024
}

# ---------------------------------------------------------------- cache ---

variable "cache_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "cache_nodes" {
  description = "ElastiCache nodes: a primary and replicas (2 to 6, Multi-AZ with failover)."
  type        = number
  default     = 2
}

# ---------------------------------------------------------------- services ---

variable "tenant_role_prefix" {
  description = "TENANT_ROLE_PREFIX: prefix of the PostgreSQL roles and databases this deployment creates."
  type        = string
  default     = "tenant"
}

variable "deprovision_retention" {
  description = "DEPROVISION_RETENTION: how long a deleted tenant's data is kept."
  type        = string
  default     = "7d"
}

variable "worker_concurrency" {
  description = "WORKER_CONCURRENCY: jobs each control-plane task runs at once."
  type        = number
  default     = 4
}

variable "router_max_connections" {
  description = "ROUTER_MAX_CONNECTIONS per router task; router_max_count x this must fit the database's max_connections."
  type        = number
  default     = 100
}

variable "router_tenant_max_connections" {
  description = "ROUTER_TENANT_MAX_CONNECTIONS: most connections one tenant gets from one router."
  type        = number
  default     = 20
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

variable "router_cpu" {
  description = "Fargate CPU units per router task."
  type        = number
  default     = 512
}

variable "router_memory" {
  description = "Fargate memory per router task, in MiB."
  type        = number
  default     = 1024
}

variable "router_min_count" {
  description = "Fewest router tasks."
  type        = number
  default     = 1
}

variable "router_max_count" {
  description = "Most router tasks."
  type        = number
  default     = 2
}

variable "control_plane_cpu" {
  description = "Fargate CPU units per control-plane task."
  type        = number
  default     = 512
}

variable "control_plane_memory" {
  description = "Fargate memory per control-plane task, in MiB."
  type        = number
  default     = 1024
}

variable "control_plane_ecs_exec" {
  description = "Allow ECS Exec sessions into the control plane's containers to run tenantctl commands (recorded in the exec-sessions log group). Its agent needs a writable root filesystem, so the control plane's is read-only only when this is off; one-off `aws ecs run-task` with a command override works either way."
  type        = bool
  default     = true
}

variable "control_plane_min_count" {
  description = "Fewest control-plane tasks (workers share the job queue safely)."
  type        = number
  default     = 1
}

variable "control_plane_max_count" {
  description = "Most control-plane tasks."
  type        = number
  default     = 2
}

# ---------------------------------------------------------------- dedicated clusters ---

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

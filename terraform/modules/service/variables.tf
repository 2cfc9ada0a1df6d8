variable "name" {
  description = "Service name and name prefix (e.g. tenancy-production-tenant-router)."
  type        = string
}

variable "container_name" {
  description = "Name of the container (tenant-router or tenantctl)."
  type        = string
}

variable "cluster_arn" {
  description = "ECS cluster the service runs in."
  type        = string
}

variable "cluster_name" {
  description = "Name of that ECS cluster (for autoscaling)."
  type        = string
}

variable "image" {
  description = "Image URI with its tag or digest."
  type        = string
}

variable "command" {
  description = "[\"tenant-router\"] or [\"tenantctl\", \"serve\"]."
  type        = list(string)
}

variable "environment" {
  description = "Plain environment variables, by name (names the binary's --help lists)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables from Secrets Manager: name => secret ARN."
  type        = map(string)
  default     = {}
}

variable "cpu" {
  description = "Fargate CPU units per task."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Fargate memory per task, in MiB."
  type        = number
  default     = 1024
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64 (the image's platform)."
  type        = string
  default     = "X86_64"
}

variable "container_port" {
  description = "Port the ALB sends traffic to (ROUTER_LISTEN / TENANTCTL_LISTEN)."
  type        = number
}

variable "health_check_port" {
  description = "Port the ALB health check uses (ROUTER_ADMIN_LISTEN for the router; the traffic port for the control plane)."
  type        = number
}

variable "target_group_arn" {
  description = "ALB target group of the service."
  type        = string
}

variable "alb_security_group_id" {
  description = "Security group of the ALB (the only source of inbound traffic)."
  type        = string
}

variable "additional_load_balancers" {
  description = "Further target groups the service registers with, each on a container port of its own, with the security group of its load balancer (the only source allowed on that port): e.g. the routers' PostgreSQL NLB."
  type = list(object({
    target_group_arn  = string
    container_port    = number
    security_group_id = string
    description       = string
  }))
  default = []
}

variable "task_role_arn" {
  description = "Task role (the binary's AWS permissions)."
  type        = string
}

variable "execution_role_arn" {
  description = "Execution role (image, logs, injected secrets)."
  type        = string
}

variable "log_group_name" {
  description = "CloudWatch log group of the containers."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tasks."
  type        = string
}

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC (PostgreSQL and Redis are reached inside it)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "additional_egress" {
  description = "Further outbound TCP destinations, e.g. the application behind ROUTER_UPSTREAM."
  type = list(object({
    description = string
    cidr        = string
    port        = number
  }))
  default = []
}

variable "min_count" {
  description = "Fewest tasks (autoscaling floor; 2 or more spreads them over availability zones)."
  type        = number
  default     = 2
}

variable "max_count" {
  description = "Most tasks (autoscaling ceiling). For the router: max_count x ROUTER_MAX_CONNECTIONS must fit the database's max_connections."
  type        = number
  default     = 4
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation autoscaling keeps the service at."
  type        = number
  default     = 60
}

variable "health_check_grace_period_seconds" {
  description = "Seconds after a task starts before failing ALB health checks count."
  type        = number
  default     = 60
}

variable "enable_execute_command" {
  description = "Allow ECS Exec sessions into the containers (the task role must allow ssmmessages)."
  type        = bool
  default     = false
}

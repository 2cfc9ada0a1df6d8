variable "family" {
  description = "Task definition family (e.g. tenancy-production-tenant-router)."
  type        = string
}

variable "container_name" {
  description = "Name of the one container."
  type        = string
}

variable "image" {
  description = "Image URI with its tag or digest (the repository's Dockerfile: both binaries, migrations/ and tenant-templates/)."
  type        = string
}

variable "command" {
  description = "The binary and its subcommand, e.g. [\"tenant-router\"] or [\"tenantctl\", \"serve\"]; configuration goes in environment and secrets, not in flags."
  type        = list(string)
}

variable "environment" {
  description = "Plain environment variables, by name. Every name must be one the command's --help lists (scripts/check-terraform.sh checks)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables injected from Secrets Manager: name => secret ARN. Values the binaries hide in --help (URLs with passwords, signing secrets) must come this way."
  type        = map(string)
  default     = {}
}

variable "cpu" {
  description = "Fargate CPU units of the task (256 = 1/4 vCPU)."
  type        = number
}

variable "memory" {
  description = "Fargate memory of the task, in MiB."
  type        = number
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64: must match the image's platform."
  type        = string
  default     = "X86_64"
}

variable "container_ports" {
  description = "TCP ports the container listens on."
  type        = list(number)
  default     = []
}

variable "task_role_arn" {
  description = "Role the binary's AWS SDK uses."
  type        = string
}

variable "execution_role_arn" {
  description = "Role ECS uses to pull the image, write logs and read the secrets."
  type        = string
}

variable "log_group_name" {
  description = "CloudWatch log group of the container's output."
  type        = string
}

variable "log_stream_prefix" {
  description = "Prefix of the container's log streams."
  type        = string
}

variable "readonly_root_filesystem" {
  description = "Mount the container's root filesystem read-only (the binaries write nothing; ECS Exec's agent needs it writable)."
  type        = bool
  default     = true
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL; above SHUTDOWN_GRACE (30s) so in-flight work drains."
  type        = number
  default     = 45
}

variable "name" {
  description = "Name prefix of every resource (e.g. tenancy-production); at most 25 characters (<name>-pg names the NLB and its target group)."
  type        = string

  validation {
    condition     = length(var.name) <= 25
    error_message = "name must be at most 25 characters (load balancer and target group names are limited to 32)."
  }
}

variable "vpc_id" {
  description = "VPC of the NLB and the routers."
  type        = string
}

variable "vpc_cidr_block" {
  description = "IPv4 range of the VPC: its clients may always connect, and the NLB only sends inside it."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the NLB, one per availability zone: the public ones when internet_facing, else the private ones."
  type        = list(string)
}

variable "internet_facing" {
  description = "An internet-facing NLB (public addresses) instead of an internal one (reachable from the VPC and networks connected to it)."
  type        = bool
  default     = false
}

variable "client_cidrs" {
  description = "Source ranges allowed to connect besides the VPC itself (e.g. a VPN, a peered VPC, or, with internet_facing, the tenants' servers)."
  type        = list(string)
  default     = []
}

variable "port" {
  description = "Port of the TCP listener and of the routers' ROUTER_PG_LISTEN."
  type        = number
  default     = 6432
}

variable "host" {
  description = "Host name PostgreSQL clients connect to (ROUTER_PG_HOST of the routers); the router's certificate must name it."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone in which to create the host's alias record; null when DNS is managed elsewhere (point the host at nlb_dns_name yourself)."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to delete the NLB."
  type        = bool
  default     = true
}

variable "name" {
  description = "Name prefix of every resource (e.g. tenancy-production)."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 range of the VPC; split into one public and one private /20 (for a /16) per availability zone."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones of the subnets, by name (e.g. [\"eu-west-1a\", \"eu-west-1b\"]): 2 to 4 of the region's. Named explicitly so that AWS adding a zone never changes the network."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must name 2 to 4 distinct zones (Aurora, ElastiCache and the ALB need two)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper, for staging) instead of one per availability zone."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the VPC flow log group."
  type        = string
}

variable "log_retention_days" {
  description = "Days the VPC flow logs are kept."
  type        = number
  default     = 365
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 range of the VPC (security groups allow database and Redis traffic within it)."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per availability zone (the ALB)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per availability zone (ECS tasks, Aurora, ElastiCache)."
  value       = aws_subnet.private[*].id
}

output "availability_zones" {
  description = "The availability zones in use."
  value       = local.azs
}

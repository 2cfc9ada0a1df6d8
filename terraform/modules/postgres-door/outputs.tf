output "nlb_dns_name" {
  description = "DNS name of the NLB (CNAME target of the host when DNS is not in Route 53)."
  value       = aws_lb.this.dns_name
}

output "nlb_arn_suffix" {
  description = "ARN suffix of the NLB (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.this.arn_suffix
}

output "security_group_id" {
  description = "Security group of the NLB (the routers accept PostgreSQL clients from it)."
  value       = aws_security_group.this.id
}

output "target_group_arn" {
  description = "Target group of the routers' PostgreSQL listener."
  value       = aws_lb_target_group.router.arn
}

output "host" {
  description = "Host name PostgreSQL clients connect to."
  value       = var.host
}

output "port" {
  description = "Port PostgreSQL clients connect to."
  value       = var.port
}

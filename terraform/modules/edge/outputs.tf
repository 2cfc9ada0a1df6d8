output "alb_arn_suffix" {
  description = "ARN suffix of the ALB (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.this.arn_suffix
}

output "alb_dns_name" {
  description = "DNS name of the ALB (CNAME or alias target when DNS is not in Route 53)."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the ALB (for alias records)."
  value       = aws_lb.this.zone_id
}

output "alb_security_group_id" {
  description = "Security group of the ALB (the services accept traffic from it)."
  value       = aws_security_group.alb.id
}

output "router_target_group_arn" {
  description = "Target group of tenant-router."
  value       = aws_lb_target_group.router.arn
}

output "router_target_group_arn_suffix" {
  description = "ARN suffix of the router's target group (CloudWatch dimension TargetGroup)."
  value       = aws_lb_target_group.router.arn_suffix
}

output "control_plane_target_group_arn" {
  description = "Target group of tenantctl serve."
  value       = aws_lb_target_group.control_plane.arn
}

output "control_plane_target_group_arn_suffix" {
  description = "ARN suffix of the control plane's target group (CloudWatch dimension TargetGroup)."
  value       = aws_lb_target_group.control_plane.arn_suffix
}

output "api_host" {
  description = "Host name of the control-plane API."
  value       = local.api_host
}

output "billing_webhook_url" {
  description = "The URL to give the billing provider as the webhook endpoint."
  value       = "https://${local.api_host}/v1/webhooks/billing"
}

output "certificate_arn" {
  description = "ARN of the wildcard certificate."
  value       = aws_acm_certificate.this.arn
}

output "certificate_validation_records" {
  description = "DNS records that validate the certificate (create them yourself when route53_zone_id is null)."
  value = [for dvo in aws_acm_certificate.this.domain_validation_options : {
    name  = dvo.resource_record_name
    type  = dvo.resource_record_type
    value = dvo.resource_record_value
  }]
}

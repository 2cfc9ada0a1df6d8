# The public entry point: one ALB with a wildcard certificate for *.<tenant_base_domain>.
#   https://<slug>.<tenant_base_domain>/...      -> tenant-router (ROUTER_LISTEN)
#   https://<api_host>/v1/webhooks/billing       -> tenantctl serve (billing provider, any source)
#   https://<api_host>/v1/..., /healthz, /readyz -> tenantctl serve (optionally operator CIDRs only)
#   https://<api_host>/metrics                   -> 404 (Prometheus scrapes inside the VPC)
# Plain HTTP only redirects to HTTPS. WAF (AWS managed rules and a per-IP rate limit) guards
# the ALB; access logs go to S3.

data "aws_elb_service_account" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  api_host     = coalesce(var.api_host, "api.${var.tenant_base_domain}")
  api_in_base  = endswith(local.api_host, ".${var.tenant_base_domain}") && length(split(".", local.api_host)) == length(split(".", var.tenant_base_domain)) + 1
  wildcard     = "*.${var.tenant_base_domain}"
  manage_dns   = var.route53_zone_id != null
  not_found    = jsonencode({ message = "no such endpoint", error = { code = "not_found", message = "no such endpoint" } })
  forbidden    = jsonencode({ message = "not allowed from this address", error = { code = "forbidden", message = "not allowed from this address" } })
  restrict_api = length(var.operator_cidrs) > 0
}

# ---------------------------------------------------------------- certificate and DNS ---

resource "aws_acm_certificate" "this" {
  domain_name               = local.wildcard
  subject_alternative_names = local.api_in_base ? [] : [local.api_host]
  validation_method         = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = local.manage_dns ? {
    for dvo in aws_acm_certificate.this.domain_validation_options : dvo.domain_name => dvo
  } : {}

  zone_id         = var.route53_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

# Waits until ACM has issued the certificate (with DNS elsewhere: until the operator has
# created the validation records shown by the certificate_validation_records output).
resource "aws_acm_certificate_validation" "this" {
  certificate_arn         = aws_acm_certificate.this.arn
  validation_record_fqdns = local.manage_dns ? [for r in aws_route53_record.validation : r.fqdn] : null
}

resource "aws_route53_record" "alias" {
  for_each = local.manage_dns ? toset([local.wildcard, local.api_host]) : toset([])

  zone_id = var.route53_zone_id
  name    = each.value
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = false
  }
}

# ---------------------------------------------------------------- access logs ---

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_145:ALB access log delivery only supports SSE-S3 (AES256), not SSE-KMS.
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself; logging it into another bucket would only move the question.
  #checkov:skip=CKV_AWS_144:Access logs are operational data kept for log_retention_days; cross-region replication is not worth doubling them.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of new log objects; they are read on demand (Athena or download).
  bucket_prefix = "${var.name}-alb-"
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire"
    status = "Enabled"
    filter {}

    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "access_logs" {
  # Regions opened before August 2022 deliver as the regional ELB account, newer ones as the
  # log delivery service.
  statement {
    sid       = "ElbDeliversAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.current.arn]
    }
  }

  statement {
    sid       = "LogDeliveryServiceDeliversAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}

# ---------------------------------------------------------------- load balancer ---

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "${var.name} ALB: HTTPS (and HTTP for the redirect) from anywhere, to the services"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from anywhere (tenants, operators, the billing provider)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  #checkov:skip=CKV_AWS_260:Port 80 only answers with a redirect to HTTPS (the listener has no forward action), so no request is ever served in plain text.
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from anywhere, redirected to HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "targets" {
  for_each = toset([for p in distinct([var.router_port, var.router_health_port, var.control_plane_port]) : tostring(p)])

  security_group_id = aws_security_group.alb.id
  description       = "To the services' traffic and health-check ports"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
}

resource "aws_lb" "this" {
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.access_logs]
}

# TLS ends at the ALB; the binaries serve plain HTTP inside the private subnets.
resource "aws_lb_target_group" "router" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; tenant-router serves plain HTTP, reachable only from the ALB's security group inside private subnets.
  name                 = "${var.name}-router"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.router_port
  deregistration_delay = 30

  # Liveness on the admin listener, not /readyz: a router whose catalog is unreachable still
  # serves the tenants it has cached, and an ALB that found every router "not ready" would
  # route to all of them anyway.
  health_check {
    path                = "/healthz"
    port                = tostring(var.router_health_port)
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group" "control_plane" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; tenantctl serve speaks plain HTTP, reachable only from the ALB's security group inside private subnets.
  name                 = "${var.name}-api"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.control_plane_port
  deregistration_delay = 30

  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:This listener only redirects to HTTPS.
  #checkov:skip=CKV_AWS_103:No TLS on this listener; it only redirects to the HTTPS listener, whose policy is TLS 1.2+.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.this.certificate_arn

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = local.not_found
    }
  }
}

resource "aws_lb_listener_rule" "billing_webhook" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  condition {
    host_header {
      values = [local.api_host]
    }
  }
  condition {
    path_pattern {
      values = ["/v1/webhooks/billing"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.control_plane.arn
  }
}

resource "aws_lb_listener_rule" "api_metrics" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 20

  condition {
    host_header {
      values = [local.api_host]
    }
  }
  condition {
    path_pattern {
      values = ["/metrics"]
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = local.not_found
    }
  }
}

resource "aws_lb_listener_rule" "api" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 30

  condition {
    host_header {
      values = [local.api_host]
    }
  }

  dynamic "condition" {
    for_each = local.restrict_api ? [1] : []
    content {
      source_ip {
        values = var.operator_cidrs
      }
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.control_plane.arn
  }
}

# With operator_cidrs, the API host from elsewhere must not fall through to *.<base>.
resource "aws_lb_listener_rule" "api_elsewhere" {
  count = local.restrict_api ? 1 : 0

  listener_arn = aws_lb_listener.https.arn
  priority     = 35

  condition {
    host_header {
      values = [local.api_host]
    }
  }

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      status_code  = "403"
      message_body = local.forbidden
    }
  }
}

resource "aws_lb_listener_rule" "tenants" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 40

  condition {
    host_header {
      values = [local.wildcard]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.router.arn
  }
}

# ---------------------------------------------------------------- WAF ---

resource "aws_wafv2_web_acl" "this" {
  name        = var.name
  description = "${var.name}: AWS managed rules and a per-IP rate limit"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "ip-reputation"
    priority = 0
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }
    visibility_config {
      metric_name                = "${var.name}-ip-reputation"
      cloudwatch_metrics_enabled = true
      sampled_requests_enabled   = true
    }
  }

  # Tor exit nodes and anonymising proxies are blocked; hosting providers only count, since the
  # normal clients of POST /sql (tenants' servers) and the billing provider run in clouds.
  rule {
    name     = "anonymous-ip"
    priority = 4
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"

        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      metric_name                = "${var.name}-anonymous-ip"
      cloudwatch_metrics_enabled = true
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "known-bad-inputs"
    priority = 1
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      metric_name                = "${var.name}-known-bad-inputs"
      cloudwatch_metrics_enabled = true
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "common"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"

        # POST /sql bodies are SQL text up to ROUTER_MAX_BODY_BYTES: size and body-pattern rules
        # would block legitimate queries, so they only count.
        dynamic "rule_action_override" {
          for_each = ["SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY"]
          content {
            name = rule_action_override.value
            action_to_use {
              count {}
            }
          }
        }
      }
    }
    visibility_config {
      metric_name                = "${var.name}-common"
      cloudwatch_metrics_enabled = true
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-per-ip"
    priority = 3
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      metric_name                = "${var.name}-rate-per-ip"
      cloudwatch_metrics_enabled = true
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    metric_name                = var.name
    cloudwatch_metrics_enabled = true
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this.arn
}

# WAF requires the aws-waf-logs- prefix.
resource "aws_cloudwatch_log_group" "waf" {
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  # Credentials travel in headers: the router's Neon-Connection-String carries the tenant's
  # password, Authorization a bearer token.
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
  redacted_fields {
    single_header {
      name = "neon-connection-string"
    }
  }
  redacted_fields {
    single_header {
      name = "cookie"
    }
  }
}

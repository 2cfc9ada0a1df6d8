# Log groups of both services (LOG_FORMAT=json), an encrypted SNS topic, and alarms:
# 5xx from each target group and from the ALB itself, no healthy router, and the routers'
# connection pools running out.

locals {
  namespace = "Tenancy/${var.name}"
}

resource "aws_cloudwatch_log_group" "router" {
  name              = "/ecs/${var.name}/tenant-router"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_cloudwatch_log_group" "control_plane" {
  name              = "/ecs/${var.name}/tenantctl"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# What operators type and see in ECS Exec sessions (tenantctl run in the control plane's
# container). A bearer token printed by `tenantctl tokens create` lands here too: access to
# this group is as sensitive as the tokens.
resource "aws_cloudwatch_log_group" "exec_sessions" {
  name              = "/ecs/${var.name}/exec-sessions"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.alarm_emails)

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---------------------------------------------------------------- ALB 5xx ---

resource "aws_cloudwatch_metric_alarm" "router_5xx" {
  alarm_name          = "${var.name}-tenant-router-5xx"
  alarm_description   = "tenant-router answered more than ${var.router_5xx_threshold} 5xx in 5 minutes (503 pool_exhausted / tenant_unavailable / catalog_unavailable, 502/504 from ROUTER_UPSTREAM): see the router's log group."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.router_5xx_threshold
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = var.router_target_group_arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "control_plane_5xx" {
  alarm_name          = "${var.name}-tenantctl-5xx"
  alarm_description   = "tenantctl serve answered more than ${var.control_plane_5xx_threshold} 5xx in 5 minutes (API or billing webhook; the billing provider retries failed deliveries)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.control_plane_5xx_threshold
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = var.control_plane_target_group_arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "alb_5xx" {
  alarm_name          = "${var.name}-alb-5xx"
  alarm_description   = "The ALB itself answered 5xx (no healthy target, target timeouts or resets)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_ELB_5XX_Count"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 10
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    LoadBalancer = var.alb_arn_suffix
  }
}

resource "aws_cloudwatch_metric_alarm" "router_no_healthy_target" {
  alarm_name          = "${var.name}-tenant-router-no-healthy-target"
  alarm_description   = "No tenant-router passes the ALB health check (/healthz on ROUTER_ADMIN_LISTEN)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = var.router_target_group_arn_suffix
  }
}

# ---------------------------------------------------------------- pool exhaustion ---
#
# When a tenant's pool or the router's connection budget (ROUTER_MAX_CONNECTIONS) has no
# connection within ROUTER_CHECKOUT_TIMEOUT, POST /sql answers 503 `pool_exhausted` and the router
# logs it by code (LOG_FORMAT=json, tracing's JSON with the event's fields flattened):
#   {"level":"WARN","message":"no connection free within the checkout timeout",
#    "code":"pool_exhausted","span":{"name":"request","path":"/sql",...}}

resource "aws_cloudwatch_log_metric_filter" "router_pool_exhausted" {
  name           = "${var.name}-router-pool-exhausted"
  log_group_name = aws_cloudwatch_log_group.router.name
  pattern        = "{ $.code = \"pool_exhausted\" }"

  metric_transformation {
    name          = "RouterPoolExhausted"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "router_pool_exhausted" {
  alarm_name          = "${var.name}-tenant-router-pool-exhausted"
  alarm_description   = "POST /sql answered more than ${var.pool_exhausted_threshold} 503 pool_exhausted a minute for 3 minutes: tenant pools or ROUTER_MAX_CONNECTIONS are too small for the load (or queries hold connections too long)."
  namespace           = local.namespace
  metric_name         = aws_cloudwatch_log_metric_filter.router_pool_exhausted.metric_transformation[0].name
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.pool_exhausted_threshold
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

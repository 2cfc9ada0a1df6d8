# A Fargate service behind the ALB running one tenancy binary, with its own security group and
# CPU target-tracking autoscaling; optionally behind further load balancers (the routers'
# PostgreSQL NLB) on ports of their own.

module "task" {
  source = "../task-definition"

  family             = var.name
  container_name     = var.container_name
  image              = var.image
  command            = var.command
  environment        = var.environment
  secrets            = var.secrets
  cpu                = var.cpu
  memory             = var.memory
  cpu_architecture   = var.cpu_architecture
  container_ports    = distinct(concat([var.container_port, var.health_check_port], [for lb in var.additional_load_balancers : lb.container_port]))
  task_role_arn      = var.task_role_arn
  execution_role_arn = var.execution_role_arn
  log_group_name     = var.log_group_name
  log_stream_prefix  = var.container_name

  # ECS Exec's agent writes into the container, which a read-only root filesystem forbids.
  readonly_root_filesystem = !var.enable_execute_command
}

locals {
  # By container port: a port known when planning, unlike the target groups and security groups.
  additional_load_balancers = { for lb in var.additional_load_balancers : tostring(lb.container_port) => lb }
}

resource "aws_security_group" "this" {
  name        = var.name
  description = "${var.name}: traffic from the ALB; out to AWS APIs, PostgreSQL and Redis"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "from_alb" {
  for_each = toset([for p in distinct([var.container_port, var.health_check_port]) : tostring(p)])

  security_group_id            = aws_security_group.this.id
  description                  = "From the ALB (traffic and health checks)"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
}

resource "aws_vpc_security_group_ingress_rule" "from_additional_load_balancers" {
  for_each = local.additional_load_balancers

  security_group_id            = aws_security_group.this.id
  description                  = each.value.description
  referenced_security_group_id = each.value.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = each.value.container_port
  to_port                      = each.value.container_port
}

locals {
  egress = concat(
    [
      { description = "AWS APIs (Secrets Manager, ECR, CloudWatch) through NAT", cidr = "0.0.0.0/0", port = 443 },
      { description = "PostgreSQL (catalog and tenant clusters)", cidr = var.vpc_cidr_block, port = 5432 },
      { description = "Redis", cidr = var.vpc_cidr_block, port = 6379 },
    ],
    var.additional_egress,
  )
}

resource "aws_vpc_security_group_egress_rule" "this" {
  count = length(local.egress)

  security_group_id = aws_security_group.this.id
  description       = local.egress[count.index].description
  cidr_ipv4         = local.egress[count.index].cidr
  ip_protocol       = "tcp"
  from_port         = local.egress[count.index].port
  to_port           = local.egress[count.index].port
}

resource "aws_ecs_service" "this" {
  name             = var.name
  cluster          = var.cluster_arn
  task_definition  = module.task.arn
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  desired_count    = var.min_count

  enable_execute_command            = var.enable_execute_command
  enable_ecs_managed_tags           = true
  propagate_tags                    = "SERVICE"
  health_check_grace_period_seconds = var.health_check_grace_period_seconds

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.this.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.target_group_arn
    container_name   = var.container_name
    container_port   = var.container_port
  }

  dynamic "load_balancer" {
    for_each = local.additional_load_balancers
    content {
      target_group_arn = load_balancer.value.target_group_arn
      container_name   = var.container_name
      container_port   = load_balancer.value.container_port
    }
  }

  lifecycle {
    # Autoscaling owns the count once the service exists.
    ignore_changes = [desired_count]
  }
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension
  resource_id        = aws_appautoscaling_target.this.resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

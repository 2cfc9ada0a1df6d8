# One Fargate task definition with one container running a tenancy binary. Every ECS task
# definition of this repository is made here, so scripts/check-terraform.sh can check the
# environment names each caller passes against the binary's --help.

data "aws_region" "current" {}

locals {
  container = {
    name                   = var.container_name
    image                  = var.image
    command                = var.command
    essential              = true
    readonlyRootFilesystem = var.readonly_root_filesystem
    stopTimeout            = var.stop_timeout
    environment            = [for k in sort(keys(var.environment)) : { name = k, value = var.environment[k] }]
    secrets                = [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }]
    portMappings           = [for p in var.container_ports : { containerPort = p, protocol = "tcp" }]
    linuxParameters        = { initProcessEnabled = true }
    ulimits                = [{ name = "nofile", softLimit = 65536, hardLimit = 65536 }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = var.log_group_name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = var.log_stream_prefix
      }
    }
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  task_role_arn            = var.task_role_arn
  execution_role_arn       = var.execution_role_arn
  container_definitions    = jsonencode([local.container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

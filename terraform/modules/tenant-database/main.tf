# A dedicated Aurora cluster for an enterprise tenant (the same module as the catalog's, with
# its own admin URL secret), and a one-off ECS task that registers it with the control plane:
# `tenantctl clusters add --name <cluster_name> --capacity <capacity>` with CLUSTER_ADMIN_URL
# and DATABASE_URL injected from Secrets Manager, so no password is typed or logged.

data "aws_region" "current" {}

module "cluster" {
  source = "../database"

  name                      = "${var.name}-${var.cluster_name}"
  vpc_id                    = var.vpc_id
  subnet_ids                = var.subnet_ids
  client_security_group_ids = var.client_security_group_ids
  kms_key_arn               = var.kms_key_arn
  engine_version            = var.engine_version
  min_capacity              = var.min_capacity
  max_capacity              = var.max_capacity
  instance_count            = var.instance_count
  backup_retention_days     = var.backup_retention_days
  deletion_protection       = var.deletion_protection
  database_name             = "tenants"
  url_secret_name           = "${var.secrets_prefix}/service/clusters/${var.cluster_name}/admin-url"
}

# The registration task's execution role: reads exactly the two injected secrets.
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "execution" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.log_group_arn}:log-stream:*"]
  }

  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.catalog_url_secret_arn, module.cluster.url_secret_arn]
  }

  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = var.ecr_repository_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      # GetAuthorizationToken has no resource-level permissions: AWS only accepts "*".
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-register-${var.cluster_name}"
  description        = "Starts the task that registers cluster ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "execution" {
  name   = "start-registration"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

module "registration" {
  source = "../task-definition"

  family         = "${var.name}-register-${var.cluster_name}"
  container_name = "tenantctl"
  image          = var.image
  command        = ["tenantctl", "clusters", "add", "--name", var.cluster_name, "--capacity", tostring(var.capacity)]
  environment    = var.environment
  secrets = {
    DATABASE_URL      = var.catalog_url_secret_arn
    CLUSTER_ADMIN_URL = module.cluster.url_secret_arn
  }
  cpu                = 256
  memory             = 512
  task_role_arn      = var.control_plane_task_role_arn
  execution_role_arn = aws_iam_role.execution.arn
  log_group_name     = var.log_group_name
  log_stream_prefix  = "register-${var.cluster_name}"
}

# Least-privilege roles of the two services. Execution roles (used by ECS to start a task:
# pull the image, write the log stream, read the secrets injected as environment variables)
# are separate from task roles (used by the binaries through the AWS SDK).
#
# What the binaries call (tenancy/src/secrets/aws.rs): tenantctl CreateSecret, PutSecretValue
# (the secret exists), RestoreSecret (a secret scheduled for deletion under the same name),
# GetSecretValue and DeleteSecret, on <prefix>/tenants/<id>/postgres and
# <prefix>/clusters/<name>/admin; tenant-router only GetSecretValue on the tenants' secrets.
# tenantctl creates them with Secrets Manager's default key (aws/secretsmanager), whose use is
# granted to the callers of Secrets Manager in the account, so no KMS permission is needed.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  secret_arn_base = "arn:${local.partition}:secretsmanager:${local.region}:${local.account}:secret:${var.secrets_prefix}"
  tenant_secrets  = "${local.secret_arn_base}/tenants/*"
  cluster_secrets = "${local.secret_arn_base}/clusters/*"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

# ---------------------------------------------------------------- execution roles ---

data "aws_iam_policy_document" "execution" {
  for_each = {
    router        = { secrets = var.router_secret_arns, log_group = var.router_log_group_arn }
    control-plane = { secrets = var.control_plane_secret_arns, log_group = var.control_plane_log_group_arn }
  }

  statement {
    sid       = "WriteOwnLogStreams"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${each.value.log_group}:log-stream:*"]
  }

  statement {
    sid       = "ReadTheInjectedSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = each.value.secrets
  }

  statement {
    sid       = "DecryptTheInjectedSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid = "PullTheImage"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = var.ecr_repository_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      # GetAuthorizationToken has no resource-level permissions: AWS only accepts "*".
      sid       = "LogInToTheRegistry"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  for_each = data.aws_iam_policy_document.execution

  name               = "${var.name}-${each.key}-execution"
  description        = "ECS starts ${each.key} tasks with it: image, log stream, injected secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "execution" {
  for_each = data.aws_iam_policy_document.execution

  name   = "start-task"
  role   = aws_iam_role.execution[each.key].id
  policy = each.value.json
}

# ---------------------------------------------------------------- task roles ---

data "aws_iam_policy_document" "router_task" {
  statement {
    sid       = "ReadTenantCredentials"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.tenant_secrets]
  }
}

resource "aws_iam_role" "router_task" {
  name               = "${var.name}-router-task"
  description        = "tenant-router: reads tenant credentials"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "router_task" {
  name   = "tenant-credentials-read"
  role   = aws_iam_role.router_task.id
  policy = data.aws_iam_policy_document.router_task.json
}

data "aws_iam_policy_document" "control_plane_task" {
  statement {
    sid       = "CreateTenantAndClusterSecrets"
    actions   = ["secretsmanager:CreateSecret"]
    resources = [local.tenant_secrets, local.cluster_secrets]
    condition {
      test     = "StringLike"
      variable = "secretsmanager:Name"
      values   = ["${var.secrets_prefix}/tenants/*", "${var.secrets_prefix}/clusters/*"]
    }
  }

  statement {
    sid = "ManageTenantAndClusterSecrets"
    actions = [
      "secretsmanager:PutSecretValue",
      "secretsmanager:RestoreSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:DeleteSecret",
    ]
    resources = [local.tenant_secrets, local.cluster_secrets]
  }

  # tenantctl deletes with a recovery window (7 days); never let a deletion be irreversible.
  statement {
    sid       = "NoDeletionWithoutRecovery"
    effect    = "Deny"
    actions   = ["secretsmanager:DeleteSecret"]
    resources = [local.tenant_secrets, local.cluster_secrets]
    condition {
      test     = "Bool"
      variable = "secretsmanager:ForceDeleteWithoutRecovery"
      values   = ["true"]
    }
  }

  dynamic "statement" {
    for_each = var.control_plane_execute_command ? [1] : []
    content {
      # ECS Exec's channels (Session Manager) have no resource-level permissions.
      sid = "EcsExecChannels"
      actions = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.control_plane_execute_command ? [1] : []
    content {
      sid       = "EcsExecSessionEncryption"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = var.control_plane_execute_command ? [1] : []
    content {
      sid       = "EcsExecSessionLogGroupLookup"
      actions   = ["logs:DescribeLogGroups"]
      resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
    }
  }

  dynamic "statement" {
    for_each = var.control_plane_execute_command ? [1] : []
    content {
      sid       = "EcsExecSessionRecording"
      actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
      resources = ["${var.exec_sessions_log_group_arn}:*"]
    }
  }
}

resource "aws_iam_role" "control_plane_task" {
  name               = "${var.name}-control-plane-task"
  description        = "tenantctl serve: manages tenant and cluster secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "control_plane_task" {
  name   = "tenant-credentials-manage"
  role   = aws_iam_role.control_plane_task.id
  policy = data.aws_iam_policy_document.control_plane_task.json
}

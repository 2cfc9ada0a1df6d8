# The customer-managed KMS key of the deployment (Aurora, ElastiCache, the service secrets,
# CloudWatch log groups, SNS) and the names of the secrets under SECRETS_PREFIX.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition
  # Every secret under the prefix; `secret:<name>` ARNs end in -XXXXXX, hence the wildcards.
  secret_arn_base = "arn:${local.partition}:secretsmanager:${local.region}:${local.account}:secret:${var.secrets_prefix}"
}

# Key policies always name the key itself as "*" (the policy is attached to one key).
data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" is the key it is attached to; the account-root statement is AWS's default key policy, which hands the key's administration to IAM policies.
  #checkov:skip=CKV_AWS_111:Same: Resource "*" in a key policy means this key only, and the service statements are limited by encryption context or source account.
  #checkov:skip=CKV_AWS_356:Same: a key policy cannot name a narrower resource than "*", which already means this one key.
  statement {
    sid       = "AccountAdministersTheKeyThroughIAM"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsThisAccountsLogGroups"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: Aurora, ElastiCache, service secrets, logs and alarms"
  enable_key_rotation     = true
  deletion_window_in_days = var.key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# The billing provider's webhook signing secret (BILLING_WEBHOOK_SECRET of `tenantctl serve`).
# Terraform creates the secret but never its value: the operator puts it (see the README), so
# the value is neither in the configuration nor in the state.
resource "aws_secretsmanager_secret" "billing_webhook" {
  #checkov:skip=CKV2_AWS_57:The value is the billing provider's signing secret (Stripe whsec_...); it is rolled in the provider's dashboard and put here by the operator, a rotation Lambda cannot produce it.
  name                    = "${var.secrets_prefix}/service/billing-webhook-secret"
  description             = "BILLING_WEBHOOK_SECRET of tenantctl serve (${var.name})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}

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

# ROUTER_RECORDS_KEY: the key every router signs the routing records it shares in Redis with,
# so write access to Redis cannot route one tenant's requests to another. Generated here (any
# 32 bytes do); replacing it (terraform apply -replace random_password.records_key, then
# redeploying the routers) only makes routers read the catalog until new records are written.
resource "random_password" "records_key" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "records_key" {
  #checkov:skip=CKV2_AWS_57:The value is a random key terraform generates; it is rotated by replacing random_password.records_key and redeploying the routers (records signed with the old key are then ignored and read again from the catalog).
  name                    = "${var.secrets_prefix}/service/router-records-key"
  description             = "ROUTER_RECORDS_KEY of tenant-router (${var.name})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "records_key" {
  secret_id     = aws_secretsmanager_secret.records_key.id
  secret_string = random_password.records_key.result
}

# DATABASE_URL of the routers: the catalog as the routers' own role (<prefix>_router), which may
# read routing records and nothing else. Terraform creates the secret but not its value:
# `tenantctl routers credentials` sets the role's password and prints the URL, which the
# operator puts here (see the README), so the password is neither in the configuration nor in
# the state.
resource "aws_secretsmanager_secret" "router_database_url" {
  #checkov:skip=CKV2_AWS_57:The value is produced by `tenantctl routers credentials` (which sets the role's password in PostgreSQL); rotating means running it again and redeploying the routers, which a rotation Lambda cannot do.
  name                    = "${var.secrets_prefix}/service/router-database-url"
  description             = "DATABASE_URL of tenant-router: the catalog as the routers' read-only role (${var.name})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}

# The certificate the routers' PostgreSQL listener presents (ROUTER_TLS_CERT, the chain) and its
# private key (ROUTER_TLS_KEY), both PEM, only with the PostgreSQL door. The router ends TLS
# itself (the NLB passes TCP through), so it must hold the key: ACM's certificates cannot be
# exported, so the operator gets one for the PostgreSQL host from a CA and puts it here (see the
# README). Terraform creates the secrets but never their values.
resource "aws_secretsmanager_secret" "router_tls_certificate" {
  #checkov:skip=CKV2_AWS_57:The value is a certificate chain from the operator's CA; renewing it means putting the new one and redeploying the routers, which a rotation Lambda cannot do.
  count = var.router_postgres_tls ? 1 : 0

  name                    = "${var.secrets_prefix}/service/router-postgres-tls-certificate"
  description             = "ROUTER_TLS_CERT of tenant-router: the PostgreSQL listener's certificate chain, PEM (${var.name})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret" "router_tls_key" {
  #checkov:skip=CKV2_AWS_57:The value is the private key of the operator's certificate; it is replaced with the certificate (put, then redeploy the routers), which a rotation Lambda cannot do.
  count = var.router_postgres_tls ? 1 : 0

  name                    = "${var.secrets_prefix}/service/router-postgres-tls-key"
  description             = "ROUTER_TLS_KEY of tenant-router: the PostgreSQL listener's private key, PEM (${var.name})"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}

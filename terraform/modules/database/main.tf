# Aurora PostgreSQL Serverless v2: encrypted with the customer-managed key, deletion protection,
# automated backups, a cluster parameter group sized for many schemas, and its admin URL in
# Secrets Manager (DATABASE_URL of the services, or the URL a dedicated cluster is registered
# with).

locals {
  family = "aurora-postgresql${split(".", var.engine_version)[0]}"
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "this" {
  name        = "${var.name}-postgres"
  description = "Aurora PostgreSQL ${var.name}: PostgreSQL from the services only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  count = length(var.client_security_group_ids)

  security_group_id            = aws_security_group.this.id
  description                  = "PostgreSQL from a service"
  referenced_security_group_id = var.client_security_group_ids[count.index]
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_rds_cluster_parameter_group" "this" {
  name        = var.name
  family      = local.family
  description = "${var.name}: many schemas per database"

  parameter {
    name         = "max_locks_per_transaction"
    value        = tostring(var.max_locks_per_transaction)
    apply_method = "pending-reboot"
  }

  dynamic "parameter" {
    for_each = var.max_connections == null ? [] : [var.max_connections]
    content {
      name         = "max_connections"
      value        = tostring(parameter.value)
      apply_method = "pending-reboot"
    }
  }

  # Logical replication, which tenant moves copy tables with (publications, slots and
  # subscriptions; `tenantctl tenants move`). Sets wal_level = logical.
  parameter {
    name         = "rds.logical_replication"
    value        = "1"
    apply_method = "pending-reboot"
  }

  # Connections without TLS are refused. tenantctl and tenant-router speak TLS (rustls) as
  # the URL's sslmode says; the admin URL below asks for `verify-full`. (The catalog's and, through
  # modules/tenant-database, every dedicated cluster's parameter group.)
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Slow statements (over a second) are logged. Not `log_statement = ddl`: provisioning sets
  # each tenant role's password verifier with ALTER ROLE, which would then be logged.
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }
}

resource "random_password" "master" {
  length  = 48
  special = false
}

# RDS writes the PostgreSQL log here; created first so it has a retention and the key.
resource "aws_cloudwatch_log_group" "postgresql" {
  name              = "/aws/rds/cluster/${var.name}/postgresql"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_rds_cluster" "this" {
  #checkov:skip=CKV2_AWS_8:Backups are Aurora's own: continuous, with point-in-time recovery over backup_retention_days, encrypted with the deployment's key. AWS Backup plans (cross-account or cross-region copies) are an organisation-wide policy kept outside this stack.
  #checkov:skip=CKV2_AWS_27:Query logging is on through log_min_duration_statement (every statement over 1 s). log_statement stays unset on purpose: with ddl or mod, provisioning's ALTER ROLE ... PASSWORD statements (SCRAM verifiers) would be written to the logs.
  cluster_identifier = var.name
  engine             = "aurora-postgresql"
  engine_mode        = "provisioned"
  engine_version     = var.engine_version
  database_name      = var.database_name
  master_username    = var.master_username
  master_password    = random_password.master.result
  port               = 5432

  db_subnet_group_name            = aws_db_subnet_group.this.name
  vpc_security_group_ids          = [aws_security_group.this.id]
  db_cluster_parameter_group_name = aws_rds_cluster_parameter_group.this.name

  storage_encrypted                   = true
  kms_key_id                          = var.kms_key_arn
  iam_database_authentication_enabled = true
  deletion_protection                 = var.deletion_protection
  copy_tags_to_snapshot               = true
  backup_retention_period             = var.backup_retention_days
  preferred_backup_window             = var.preferred_backup_window
  preferred_maintenance_window        = var.preferred_maintenance_window
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]

  serverlessv2_scaling_configuration {
    min_capacity = var.min_capacity
    max_capacity = var.max_capacity
  }

  depends_on = [aws_cloudwatch_log_group.postgresql]
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

data "aws_partition" "current" {}

resource "aws_rds_cluster_instance" "this" {
  count = var.instance_count

  identifier         = "${var.name}-${count.index + 1}"
  cluster_identifier = aws_rds_cluster.this.id
  engine             = aws_rds_cluster.this.engine
  engine_version     = aws_rds_cluster.this.engine_version
  instance_class     = "db.serverless"

  db_subnet_group_name                  = aws_db_subnet_group.this.name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  copy_tags_to_snapshot                 = true

  depends_on = [aws_iam_role_policy_attachment.monitoring]
}

resource "aws_secretsmanager_secret" "url" {
  #checkov:skip=CKV2_AWS_57:The value is a URL terraform composes from the endpoint and the generated master password; it is rotated by replacing random_password.master (terraform apply -replace), which changes the cluster's password and this secret in one apply, then redeploying the services.
  name                    = var.url_secret_name
  description             = "Admin connection URL of Aurora cluster ${var.name}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "url" {
  secret_id     = aws_secretsmanager_secret.url.id
  # sslmode=verify-full: encrypted, and the server must present a certificate for the cluster
  # endpoint signed by Amazon's RDS CA (the image's bundle, PG_SSL_ROOT_CERT in the services'
  # environment). Tenants' secrets inherit the cluster's sslmode, routers' DATABASE_URL the
  # catalog's.
  secret_string = "postgres://${var.master_username}:${random_password.master.result}@${aws_rds_cluster.this.endpoint}:${aws_rds_cluster.this.port}/${var.database_name}?sslmode=verify-full"
}

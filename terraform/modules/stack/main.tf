# The whole deployment of one environment: network, KMS and secrets, Aurora (catalog and
# default cluster), Redis, the ALB, IAM, logs and alarms, the two ECS services, and optionally
# the routers' PostgreSQL door (an NLB).
# environments/staging and environments/production call this module with their own sizes.

locals {
  name           = "tenancy-${var.environment}"
  secrets_prefix = coalesce(var.secrets_prefix, "tenancy/${var.environment}")

  router_port = 8081
  # Host name of the PostgreSQL door (`postgres` is a reserved slug: no tenant can have it).
  postgres_host      = coalesce(var.postgres_host, "postgres.${var.tenant_base_domain}")
  router_admin_port  = 9091
  control_plane_port = 8080

  # ---- container environment: only names the binaries' --help lists ----------------------
  # (scripts/check-terraform.sh checks every name below against `tenant-router --help`,
  # `tenantctl serve --help` and `tenantctl clusters add --help`.)

  # Settings both binaries share.
  shared_environment = {
    SECRETS_BACKEND    = "aws"
    SECRETS_PREFIX     = module.secrets.secrets_prefix
    AWS_REGION         = var.region
    TENANT_BASE_DOMAIN = var.tenant_base_domain
    LOG_FORMAT         = "json"
    # Amazon's RDS CA bundle in the image: URLs with sslmode=verify-full authenticate Aurora.
    PG_SSL_ROOT_CERT = "/app/rds-global-bundle.pem"
  }

  # Settings of every tenantctl command that provisions (serve, and the cluster registration).
  tenantctl_environment = merge(local.shared_environment, {
    TENANT_ROLE_PREFIX    = var.tenant_role_prefix
    TENANT_MIGRATIONS_DIR = "/app/migrations"
    TENANT_TEMPLATES_DIR  = "/app/tenant-templates"
    DEPROVISION_RETENTION = var.deprovision_retention
  })

  control_plane_environment = merge(local.tenantctl_environment, {
    TENANTCTL_LISTEN   = "0.0.0.0:${local.control_plane_port}"
    WORKER_CONCURRENCY = tostring(var.worker_concurrency)
  })

  router_environment = merge(local.shared_environment, {
    ROUTER_LISTEN                 = "0.0.0.0:${local.router_port}"
    ROUTER_ADMIN_LISTEN           = "0.0.0.0:${local.router_admin_port}"
    ROUTER_MAX_CONNECTIONS        = tostring(var.router_max_connections)
    ROUTER_TENANT_MAX_CONNECTIONS = tostring(var.router_tenant_max_connections)
    # The ALB appends the client's address to X-Forwarded-For: failed attempts count per client.
    ROUTER_TRUSTED_PROXY_HOPS = "1"
  }, local.router_upstream_environment, local.router_postgres_environment)

  router_upstream_environment = var.router_upstream == null ? tomap({}) : tomap({ ROUTER_UPSTREAM = var.router_upstream })

  # The PostgreSQL door: the listener on every interface behind the NLB, its host name (an SNI
  # naming it names no tenant; clients name theirs by the database name), and TLS from the
  # certificate the operator put in Secrets Manager. Without the door, no listener at all.
  router_postgres_environment = var.enable_postgres_door ? tomap({
    ROUTER_PG_LISTEN = "0.0.0.0:${var.router_pg_port}"
    ROUTER_PG_HOST   = local.postgres_host
  }) : tomap({ ROUTER_PG_LISTEN = "off" })

  router_postgres_secrets = var.enable_postgres_door ? tomap({
    ROUTER_TLS_CERT = module.secrets.router_tls_certificate_secret_arn
    ROUTER_TLS_KEY  = module.secrets.router_tls_key_secret_arn
  }) : tomap({})

  # Values with passwords come from Secrets Manager, never from the task definition.
  # Routers read the catalog as their own role, which sees routing records only.
  router_secrets = merge({
    DATABASE_URL       = module.secrets.router_database_url_secret_arn
    REDIS_URL          = module.cache.url_secret_arn
    ROUTER_RECORDS_KEY = module.secrets.router_records_key_secret_arn
  }, local.router_postgres_secrets)

  control_plane_secrets = {
    DATABASE_URL           = module.database.url_secret_arn
    REDIS_URL              = module.cache.url_secret_arn
    BILLING_WEBHOOK_SECRET = module.secrets.billing_webhook_secret_arn
  }
}

module "secrets" {
  source = "../secrets"

  name                = local.name
  secrets_prefix      = local.secrets_prefix
  router_postgres_tls = var.enable_postgres_door
}

module "network" {
  source = "../network"

  name               = local.name
  cidr_block         = var.vpc_cidr_block
  availability_zones = var.availability_zones
  single_nat_gateway = var.single_nat_gateway
  kms_key_arn        = module.secrets.kms_key_arn
  log_retention_days = var.log_retention_days
}

module "edge" {
  source = "../edge"

  name                = local.name
  vpc_id              = module.network.vpc_id
  vpc_cidr_block      = module.network.vpc_cidr_block
  public_subnet_ids   = module.network.public_subnet_ids
  tenant_base_domain  = var.tenant_base_domain
  api_host            = var.api_host
  route53_zone_id     = var.route53_zone_id
  router_port         = local.router_port
  router_health_port  = local.router_admin_port
  control_plane_port  = local.control_plane_port
  operator_cidrs      = var.operator_cidrs
  waf_rate_limit      = var.waf_rate_limit
  kms_key_arn         = module.secrets.kms_key_arn
  log_retention_days  = var.log_retention_days
  deletion_protection = var.deletion_protection
}

# PostgreSQL clients (psql, drivers, ORMs) -> NLB (TCP, TLS passed through) -> routers.
module "postgres_door" {
  source = "../postgres-door"
  count  = var.enable_postgres_door ? 1 : 0

  name                = local.name
  vpc_id              = module.network.vpc_id
  vpc_cidr_block      = module.network.vpc_cidr_block
  subnet_ids          = var.postgres_internet_facing ? module.network.public_subnet_ids : module.network.private_subnet_ids
  internet_facing     = var.postgres_internet_facing
  client_cidrs        = var.postgres_client_cidrs
  port                = var.router_pg_port
  host                = local.postgres_host
  route53_zone_id     = var.route53_zone_id
  deletion_protection = var.deletion_protection
}

module "observability" {
  source = "../observability"

  name                                  = local.name
  kms_key_arn                           = module.secrets.kms_key_arn
  log_retention_days                    = var.log_retention_days
  alarm_emails                          = var.alarm_emails
  alb_arn_suffix                        = module.edge.alb_arn_suffix
  router_target_group_arn_suffix        = module.edge.router_target_group_arn_suffix
  control_plane_target_group_arn_suffix = module.edge.control_plane_target_group_arn_suffix
}

module "database" {
  source = "../database"

  name                      = local.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.router.security_group_id, module.control_plane.security_group_id]
  kms_key_arn               = module.secrets.kms_key_arn
  engine_version            = var.database_engine_version
  min_capacity              = var.database_min_capacity
  max_capacity              = var.database_max_capacity
  instance_count            = var.database_instance_count
  backup_retention_days     = var.database_backup_retention_days
  deletion_protection       = var.deletion_protection
  max_locks_per_transaction = var.database_max_locks_per_transaction
  log_retention_days        = var.log_retention_days
  url_secret_name           = "${module.secrets.service_secret_name_prefix}/database-url"
}

module "cache" {
  source = "../cache"

  name                      = local.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.router.security_group_id, module.control_plane.security_group_id]
  kms_key_arn               = module.secrets.kms_key_arn
  node_type                 = var.cache_node_type
  num_cache_clusters        = var.cache_nodes
  log_retention_days        = var.log_retention_days
  url_secret_name           = "${module.secrets.service_secret_name_prefix}/redis-url"
}

module "iam" {
  source = "../iam"

  name                          = local.name
  secrets_prefix                = module.secrets.secrets_prefix
  kms_key_arn                   = module.secrets.kms_key_arn
  router_secret_arns            = values(local.router_secrets)
  control_plane_secret_arns     = values(local.control_plane_secrets)
  router_log_group_arn          = module.observability.router_log_group_arn
  control_plane_log_group_arn   = module.observability.control_plane_log_group_arn
  exec_sessions_log_group_arn   = module.observability.exec_sessions_log_group_arn
  ecr_repository_arns           = var.ecr_repository_arns
  control_plane_execute_command = var.control_plane_ecs_exec
}

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  # ECS Exec sessions (operators running tenantctl in the control plane's container) are
  # encrypted with the deployment's key and recorded in their own log group.
  configuration {
    execute_command_configuration {
      kms_key_id = module.secrets.kms_key_arn
      logging    = "OVERRIDE"

      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = module.observability.exec_sessions_log_group_name
      }
    }
  }
}

module "router" {
  source = "../service"

  name                  = "${local.name}-tenant-router"
  container_name        = "tenant-router"
  command               = ["tenant-router"]
  image                 = var.image
  environment           = local.router_environment
  secrets               = local.router_secrets
  cpu                   = var.router_cpu
  memory                = var.router_memory
  cpu_architecture      = var.cpu_architecture
  container_port        = local.router_port
  health_check_port     = local.router_admin_port
  target_group_arn      = module.edge.router_target_group_arn
  alb_security_group_id = module.edge.alb_security_group_id
  task_role_arn         = module.iam.router_task_role_arn
  execution_role_arn    = module.iam.router_execution_role_arn
  log_group_name        = module.observability.router_log_group_name
  cluster_arn           = aws_ecs_cluster.this.arn
  cluster_name          = aws_ecs_cluster.this.name
  vpc_id                = module.network.vpc_id
  vpc_cidr_block        = module.network.vpc_cidr_block
  subnet_ids            = module.network.private_subnet_ids
  min_count             = var.router_min_count
  max_count             = var.router_max_count
  additional_egress     = var.router_additional_egress

  # With the PostgreSQL door, the routers are also the NLB's targets on router_pg_port.
  additional_load_balancers = [for door in module.postgres_door : {
    target_group_arn  = door.target_group_arn
    container_port    = var.router_pg_port
    security_group_id = door.security_group_id
    description       = "PostgreSQL clients through the NLB (client addresses preserved)"
  }]
}

module "control_plane" {
  source = "../service"

  name                   = "${local.name}-tenantctl"
  container_name         = "tenantctl"
  command                = ["tenantctl", "serve"]
  image                  = var.image
  environment            = local.control_plane_environment
  secrets                = local.control_plane_secrets
  cpu                    = var.control_plane_cpu
  memory                 = var.control_plane_memory
  cpu_architecture       = var.cpu_architecture
  container_port         = local.control_plane_port
  health_check_port      = local.control_plane_port
  target_group_arn       = module.edge.control_plane_target_group_arn
  alb_security_group_id  = module.edge.alb_security_group_id
  task_role_arn          = module.iam.control_plane_task_role_arn
  execution_role_arn     = module.iam.control_plane_execution_role_arn
  log_group_name         = module.observability.control_plane_log_group_name
  cluster_arn            = aws_ecs_cluster.this.arn
  cluster_name           = aws_ecs_cluster.this.name
  vpc_id                 = module.network.vpc_id
  vpc_cidr_block         = module.network.vpc_cidr_block
  subnet_ids             = module.network.private_subnet_ids
  min_count              = var.control_plane_min_count
  max_count              = var.control_plane_max_count
  enable_execute_command = var.control_plane_ecs_exec
}

# Dedicated Aurora clusters for enterprise tenants, each with its registration task.
module "tenant_database" {
  source   = "../tenant-database"
  for_each = var.dedicated_tenant_clusters

  name                        = local.name
  cluster_name                = each.key
  capacity                    = each.value.capacity
  min_capacity                = each.value.min_capacity
  max_capacity                = each.value.max_capacity
  instance_count              = each.value.instance_count
  engine_version              = var.database_engine_version
  deletion_protection         = var.deletion_protection
  secrets_prefix              = module.secrets.secrets_prefix
  vpc_id                      = module.network.vpc_id
  subnet_ids                  = module.network.private_subnet_ids
  client_security_group_ids   = [module.router.security_group_id, module.control_plane.security_group_id]
  kms_key_arn                 = module.secrets.kms_key_arn
  image                       = var.image
  environment                 = local.tenantctl_environment
  catalog_url_secret_arn      = module.database.url_secret_arn
  control_plane_task_role_arn = module.iam.control_plane_task_role_arn
  log_group_name              = module.observability.control_plane_log_group_name
  log_group_arn               = module.observability.control_plane_log_group_arn
  ecs_cluster_name            = aws_ecs_cluster.this.name
  task_security_group_id      = module.control_plane.security_group_id
  ecr_repository_arns         = var.ecr_repository_arns
}

# Production: the whole deployment (modules/stack) at production's sizes. What differs from one
# installation to another (image, domain, DNS zone, ECR, alarm addresses) is a variable, set in
# terraform.tfvars; the environment's sizes and behaviour are written here, so that changing
# them is a reviewed change.

module "stack" {
  source = "../../modules/stack"

  environment = "production"

  image                     = var.image
  tenant_base_domain        = var.tenant_base_domain
  region                    = var.region
  availability_zones        = var.availability_zones
  route53_zone_id           = var.route53_zone_id
  api_host                  = var.api_host
  operator_cidrs            = var.operator_cidrs
  ecr_repository_arns       = var.ecr_repository_arns
  cpu_architecture          = var.cpu_architecture
  alarm_emails              = var.alarm_emails
  router_upstream           = var.router_upstream
  router_additional_egress  = var.router_additional_egress
  dedicated_tenant_clusters = var.dedicated_tenant_clusters
  enable_postgres_door      = var.enable_postgres_door
  postgres_host             = var.postgres_host
  postgres_client_cidrs     = var.postgres_client_cidrs
  postgres_internet_facing  = var.postgres_internet_facing

  vpc_cidr_block                 = "10.40.0.0/16"
  single_nat_gateway             = false # a NAT gateway per zone: a zone outage cuts only its own egress
  database_min_capacity          = 2
  database_max_capacity          = 32
  database_instance_count        = 2
  database_backup_retention_days = 30
  cache_node_type                = "cache.t4g.medium"
  router_max_connections         = 200
  router_cpu                     = 1024
  router_memory                  = 2048
  router_min_count               = 3
  router_max_count               = 8
  control_plane_ecs_exec         = false # no shells; one-off tasks run tenantctl commands (read-only root filesystem)
  control_plane_min_count        = 2
  control_plane_max_count        = 4
}

# Where these resources were before the stack module: an existing deployment's state moves to
# the new addresses instead of being destroyed and created again.

moved {
  from = module.secrets
  to   = module.stack.module.secrets
}

moved {
  from = module.network
  to   = module.stack.module.network
}

moved {
  from = module.edge
  to   = module.stack.module.edge
}

moved {
  from = module.observability
  to   = module.stack.module.observability
}

moved {
  from = module.database
  to   = module.stack.module.database
}

moved {
  from = module.cache
  to   = module.stack.module.cache
}

moved {
  from = module.iam
  to   = module.stack.module.iam
}

moved {
  from = module.router
  to   = module.stack.module.router
}

moved {
  from = module.control_plane
  to   = module.stack.module.control_plane
}

moved {
  from = module.tenant_database
  to   = module.stack.module.tenant_database
}

moved {
  from = aws_ecs_cluster.this
  to   = module.stack.aws_ecs_cluster.this
}

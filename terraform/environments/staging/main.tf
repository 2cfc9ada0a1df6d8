# Staging: the whole deployment (modules/stack) at staging's sizes. What differs from one
# installation to another (image, domain, DNS zone, ECR, alarm addresses) is a variable, set in
# terraform.tfvars; the environment's sizes and behaviour are written here, so that changing
# them is a reviewed change.

module "stack" {
  source = "../../modules/stack"

  environment = "staging"

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

  vpc_cidr_block                 = "10.41.0.0/16"
  single_nat_gateway             = true # one NAT gateway for all zones: cheaper, but a zone outage cuts egress
  database_min_capacity          = 0.5
  database_max_capacity          = 8
  database_instance_count        = 1
  database_backup_retention_days = 7
  cache_node_type                = "cache.t4g.small"
  router_max_connections         = 100
  router_cpu                     = 512
  router_memory                  = 1024
  router_min_count               = 1
  router_max_count               = 2
  control_plane_ecs_exec         = true # operators may open a shell in the control plane's container
  control_plane_min_count        = 1
  control_plane_max_count        = 2
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

# The routers' PostgreSQL door: a Network Load Balancer with a TCP listener that passes
# PostgreSQL clients' connections, TLS and all, through to the routers' ROUTER_PG_LISTEN.
#
#   postgres://<tenant role>@<host>:<port>/<tenant slug>?sslmode=verify-full
#
# Why TCP and not a TLS listener with the ACM certificate: libpq (before PostgreSQL 17's
# sslnegotiation=direct) asks for TLS with an SSLRequest sent in clear, which an NLB TLS
# listener does not understand; and TLS ended at the NLB would hide the client's SNI from the
# router. So the router ends TLS itself, with the certificate injected from Secrets Manager.
# Why one host name: *.<tenant_base_domain> already points at the ALB (one DNS record per
# name), so PostgreSQL clients reach the NLB at <host> (postgres.<tenant_base_domain> by
# default, `postgres` being a reserved slug) and name their tenant by the database name or
# `options=-c tenant=<slug>`; the router (ROUTER_PG_HOST) knows that SNI names no tenant.
#
# The target group preserves the client's address: the router counts failed attempts per client
# address. Clients inside the VPC may always connect; others only from client_cidrs, and only
# when the NLB is internet-facing.

locals {
  manage_dns = var.route53_zone_id != null
  # The VPC's own clients, then those the operator allows.
  client_cidrs = distinct(concat([var.vpc_cidr_block], var.client_cidrs))
}

resource "aws_security_group" "this" {
  name        = "${var.name}-postgres"
  description = "${var.name} PostgreSQL NLB: port ${var.port} from the VPC and the allowed client ranges, to the routers"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = toset(local.client_cidrs)

  security_group_id = aws_security_group.this.id
  description       = each.value == var.vpc_cidr_block ? "PostgreSQL clients inside the VPC" : "PostgreSQL clients allowed by postgres_client_cidrs"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
}

resource "aws_vpc_security_group_egress_rule" "routers" {
  security_group_id = aws_security_group.this.id
  description       = "To the routers' PostgreSQL listener (traffic and health checks)"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:NLB access logs record only TLS listeners' connections; this listener is TCP (TLS passes through to the router), so they would stay empty. Connections are in the VPC flow logs, and the router logs and counts its clients.
  name                             = "${var.name}-pg"
  load_balancer_type               = "network"
  internal                         = !var.internet_facing
  subnets                          = var.subnet_ids
  security_groups                  = [aws_security_group.this.id]
  enable_cross_zone_load_balancing = true # a zone with no router task still serves its clients
  enable_deletion_protection       = var.deletion_protection
}

resource "aws_lb_target_group" "router" {
  name                 = "${var.name}-pg"
  vpc_id               = var.vpc_id
  target_type          = "ip"
  protocol             = "TCP"
  port                 = var.port
  preserve_client_ip   = "true" # the router limits failed attempts per client address
  deregistration_delay = 30

  # The PostgreSQL listener itself: a connection that opens and closes costs the router
  # nothing (no startup packet, no failed attempt).
  health_check {
    protocol            = "TCP"
    port                = "traffic-port"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "postgres" {
  load_balancer_arn = aws_lb.this.arn
  port              = var.port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.router.arn
  }
}

# <host> -> the NLB. A record for the exact name wins over the *.<tenant_base_domain> wildcard
# that points at the ALB.
resource "aws_route53_record" "host" {
  count = local.manage_dns ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.host
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = false
  }
}

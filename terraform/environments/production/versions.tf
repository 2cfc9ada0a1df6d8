terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State holds the generated database password and Redis AUTH token: keep it in an encrypted,
  # versioned bucket. Partial configuration, completed at init:
  #   terraform init -backend-config=bucket=<state bucket> -backend-config=key=tenancy/<env>.tfstate \
  #     -backend-config=region=<region> -backend-config=dynamodb_table=<lock table> -backend-config=encrypt=true
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "tenancy"
      Environment = "production"
      ManagedBy   = "terraform"
    }
  }
}

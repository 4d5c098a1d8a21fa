//! The cluster-scoped `Tenant` kind: a customer of the platform, the plan it
//! is on, the domains it may serve and the namespaces its Routes may live in.
#![allow(
    clippy::duplicated_attributes,
    reason = "kube printcolumn(...) entries repeat the same keys by design"
)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A tenant of the platform.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "veloflux.io",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A tenant of the platform: its plan, the domains it may serve and the namespaces its Routes may live in.",
    status = "TenantStatus",
    shortname = "vft",
    category = "veloflux",
    derive = "PartialEq",
    printcolumn(name = "Plan", type_ = "string", json_path = ".spec.planRef"),
    printcolumn(name = "Routes", type_ = "integer", json_path = ".status.usage.routes"),
    printcolumn(
        name = "Domains",
        type_ = "integer",
        json_path = ".status.usage.domains"
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspended",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Name of the cluster-scoped Plan this tenant is on.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub plan_ref: String,
    /// Name shown in the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// Hosts this tenant may serve: exact names (`acme.com`) or one-label
    /// wildcards (`*.acme.com`). A domain already claimed by an older tenant is
    /// not granted (reason HostConflict).
    #[serde(default)]
    #[schemars(
        length(max = 10000),
        inner(
            length(min = 1, max = 253),
            pattern(r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub domains: Vec<String>,
    /// Namespaces whose Routes may attach to this tenant.
    #[serde(default)]
    #[schemars(inner(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub namespaces: Vec<String>,
    /// Email addresses of the tenant's owners.
    #[serde(default)]
    #[schemars(inner(length(min = 3, max = 254), pattern(r"^[^@\s]+@[^@\s]+$")))]
    pub owners: Vec<String>,
    /// External OIDC provider the tenant's users sign in with (plan feature `oidc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<TenantOidc>,
    /// Billing contact and payment provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<TenantBilling>,
    /// A suspended tenant is not served: its hosts answer 403.
    #[serde(default)]
    pub suspended: bool,
}

/// External OIDC sign-in for a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantOidc {
    /// Kind of provider, which sets where roles are read from by default.
    pub provider: OidcProvider,
    /// Issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    #[schemars(pattern(r"^https?://"))]
    pub issuer: String,
    /// OAuth client id registered with the provider.
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// Secret (in the operator's namespace) holding the client secret under `clientSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// Claim names to read identity from, when they differ from the standard ones.
    #[serde(default)]
    pub claim_mappings: ClaimMappings,
    /// Provider role or group → VeloFlux role (`owner`, `member`, `viewer`).
    #[serde(default)]
    pub role_mappings: std::collections::BTreeMap<String, TenantRole>,
}

/// Kind of OIDC provider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OidcProvider {
    /// Keycloak: roles from `resource_access.<clientId>.roles`.
    Keycloak,
    /// Auth0: roles from a namespaced custom claim.
    Auth0,
    /// Any OpenID Connect provider: roles from the `rolesClaim` mapping.
    Generic,
}

/// Claim names used to read identity from ID tokens.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMappings {
    /// Claim holding the email address (default `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Claim holding the display name (default `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Claim holding roles or groups, as a dotted path (default depends on the provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<String>,
}

/// A role within a tenant.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum TenantRole {
    /// Full control, including billing and users.
    Owner,
    /// Manages routes and configuration.
    Member,
    /// Reads only.
    Viewer,
}

impl TenantRole {
    /// Every role, most powerful first.
    pub const ALL: [TenantRole; 3] = [Self::Owner, Self::Member, Self::Viewer];

    /// The wire form (`owner`, `member`, `viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    /// The role named `name` in its wire form.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role may do what `needed` may: owner ⊇ member ⊇ viewer.
    pub fn includes(self, needed: TenantRole) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Self::Owner => 3,
            Self::Member => 2,
            Self::Viewer => 1,
        }
    }
}

/// A key within a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Billing contact and provider of a tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantBilling {
    /// Where invoices and payment notices go.
    #[schemars(pattern(r"^[^@\s]+@[^@\s]+$"))]
    pub email: String,
    /// Payment provider.
    #[serde(default)]
    pub provider: BillingProvider,
    /// Brazilian tax id (CPF or CNPJ), required by Efí for boleto.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{11}([0-9]{3})?$"))]
    pub tax_id: Option<String>,
}

/// Payment provider of a tenant.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BillingProvider {
    /// Not billed (internal or trial tenants).
    #[default]
    None,
    /// Stripe (cards).
    Stripe,
    /// Efí / Gerencianet (PIX and boleto).
    Efi,
}

/// Observed state of a Tenant.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Usage against the plan's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
    /// Standard conditions: `Accepted`, `Ready`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A tenant's configuration usage against its plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Routes admitted.
    pub routes: u32,
    /// The plan's route limit.
    pub max_routes: u32,
    /// Domains granted.
    pub domains: u32,
    /// The plan's domain limit.
    pub max_domains: u32,
}

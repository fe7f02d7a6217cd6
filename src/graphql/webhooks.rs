//! What leaves the server: the event feed (`events`, for the billing system) and webhook
//! endpoints with their deliveries (admins).

use crate::auth::RoleGuard;
use crate::error::AppError;
use crate::graphql::context::{now, state, viewer};
use crate::graphql::ids::{Kind, from_id, to_id};
use crate::graphql::types::{Page1, connection, page_request};
use crate::service::outbox::{self, EventType};
use crate::service::webhooks::{self, EndpointInput};
use async_graphql::connection::{Connection, CursorType, Edge, OpaqueCursor};
use async_graphql::{Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{outbox_event, webhook_delivery, webhook_endpoint};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;

/// What happened; a webhook's `type` and the feed's `name` spell it `referral.attributed`.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::service::outbox::EventType")]
pub enum DomainEventType {
    ReferralAttributed,
    ReferralQualified,
    ReferralRejected,
    RewardGranted,
    RewardAvailable,
    RewardExpired,
    RewardReversed,
    ClaimRequested,
    ClaimCompleted,
    CreditApplied,
    AffiliateApplied,
    AffiliateDecided,
    WithdrawalRequested,
    WithdrawalDecided,
    AccountDisqualified,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "entity::enums::DeliveryStatus")]
pub enum WebhookDeliveryStatus {
    /// Not delivered yet: waiting for its first attempt or its next one.
    Pending,
    Delivered,
    /// Every attempt failed; an admin may replay it.
    Failed,
}

/// A domain event: what the feed lists and a webhook carries. `data` is the payload of its
/// type at `version` (the README documents each).
pub struct DomainEvent(pub outbox_event::Model);

#[Object]
impl DomainEvent {
    async fn id(&self) -> ID {
        to_id(Kind::DomainEvent, self.0.id)
    }

    #[graphql(name = "type")]
    async fn event_type(&self) -> Result<DomainEventType> {
        EventType::from_name(&self.0.event_type)
            .map(Into::into)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown event type {:?}", self.0.event_type)).into())
    }

    /// The type as webhooks write it: `reward.granted`.
    async fn name(&self) -> &str {
        &self.0.event_type
    }

    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    async fn version(&self) -> i32 {
        outbox::PAYLOAD_VERSION
    }

    async fn data(&self) -> Json<serde_json::Value> {
        Json(serde_json::from_str(&self.0.payload).unwrap_or(serde_json::Value::Null))
    }
}

/// Where events are posted, signed with `secret` (Standard Webhooks).
pub struct WebhookEndpoint(pub webhook_endpoint::Model);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> ID {
        to_id(Kind::WebhookEndpoint, self.0.id)
    }

    async fn url(&self) -> &str {
        &self.0.url
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    /// The types it receives; empty: every type, those added later included.
    async fn event_types(&self) -> Vec<DomainEventType> {
        webhooks::event_types(&self.0).into_iter().map(Into::into).collect()
    }

    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// The signing secret (`whsec_…`): the receiver verifies `webhook-signature` with it.
    async fn secret(&self) -> &str {
        &self.0.secret
    }

    /// Since when every attempt has failed; null after a success.
    async fn failing_since(&self) -> Option<DateTime<Utc>> {
        self.0.failing_since
    }

    /// Why the server disabled it (days of failures); null when an admin did or it is enabled.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// One event for one endpoint.
pub struct WebhookDelivery {
    pub delivery: webhook_delivery::Model,
    pub event: Option<outbox_event::Model>,
}

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        to_id(Kind::WebhookDelivery, self.delivery.id)
    }

    async fn endpoint_id(&self) -> ID {
        to_id(Kind::WebhookEndpoint, self.delivery.endpoint_id)
    }

    async fn event(&self) -> Option<DomainEvent> {
        self.event.clone().map(DomainEvent)
    }

    async fn status(&self) -> WebhookDeliveryStatus {
        self.delivery.status.into()
    }

    /// Attempts made (since the last replay).
    async fn attempts(&self) -> i32 {
        self.delivery.attempts
    }

    /// When the next attempt is due (pending deliveries).
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        (self.delivery.status == entity::enums::DeliveryStatus::Pending).then_some(self.delivery.next_attempt_at)
    }

    async fn last_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.delivery.last_attempt_at
    }

    /// The HTTP status the last attempt got; null if it got none (timeout, refused address).
    async fn last_response_code(&self) -> Option<i32> {
        self.delivery.last_status_code
    }

    /// How long the last attempt took, in milliseconds.
    async fn last_latency_ms(&self) -> Option<i32> {
        self.delivery.last_latency_ms
    }

    async fn last_error(&self) -> Option<&str> {
        self.delivery.last_error.as_deref()
    }

    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.delivery.delivered_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.delivery.created_at
    }
}

/// What `replayWebhookEvents` scheduled.
#[derive(SimpleObject)]
pub struct WebhookReplay {
    /// Events scheduled again (at most 10,000 per call).
    pub events: i32,
    /// The last of them; when `complete` is false, replay again from the event after it.
    pub last_event_id: Option<ID>,
    pub complete: bool,
}

/// An endpoint to write. To create one, `url` is required; to update one, a field left out
/// keeps its value.
#[derive(InputObject)]
pub struct WebhookEndpointInput {
    /// http(s); private and loopback addresses only where the server allows them.
    pub url: Option<String>,
    /// Up to 500 characters.
    pub description: Option<String>,
    /// The types to receive; empty or left out on create: every type.
    pub event_types: Option<Vec<DomainEventType>>,
    /// Default true. Enabling an endpoint again clears its failing streak.
    pub enabled: Option<bool>,
}

impl From<WebhookEndpointInput> for EndpointInput {
    fn from(input: WebhookEndpointInput) -> Self {
        EndpointInput {
            url: input.url,
            description: input.description,
            event_types: input
                .event_types
                .map(|types| types.into_iter().map(Into::into).collect()),
            enabled: input.enabled,
        }
    }
}

/// A page of the feed: in feed order, oldest first.
pub type EventFeed = Connection<OpaqueCursor<i64>, DomainEvent>;

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Every event after the cursor, in the order they committed (as far as any reader can
    /// tell: an event never appears before a cursor already handed out), optionally of some
    /// types. Store `pageInfo.endCursor` and pass it as `after` to go on; at most 1,000 a page
    /// (default 100).
    #[graphql(guard = "RoleGuard::STAFF")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        types: Option<Vec<DomainEventType>>,
        first: Option<i32>,
    ) -> Result<EventFeed> {
        let after = after
            .map(|cursor| {
                OpaqueCursor::<i64>::decode_cursor(&cursor)
                    .map(|c| c.0)
                    .map_err(|_| AppError::bad_input("after is not a cursor of the event feed"))
            })
            .transpose()?;
        let types: Vec<EventType> = types.unwrap_or_default().into_iter().map(Into::into).collect();
        let page = outbox::feed(&state(ctx).db, after, &types, first).await?;
        let mut feed = Connection::new(after.is_some(), page.has_next);
        feed.edges.extend(page.events.into_iter().filter_map(|event| {
            let position = event.position?;
            Some(Edge::new(OpaqueCursor(position), DomainEvent(event)))
        }));
        Ok(feed)
    }

    /// Every webhook endpoint (at most 20), oldest first.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> Result<Vec<WebhookEndpoint>> {
        let endpoints = webhooks::list(&state(ctx).db).await?;
        Ok(endpoints.into_iter().map(WebhookEndpoint).collect())
    }

    /// Deliveries, newest first: of one endpoint or all, optionally of one status.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Option<ID>,
        status: Option<WebhookDeliveryStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page1<WebhookDelivery>> {
        let endpoint_id = endpoint_id.map(|id| from_id(Kind::WebhookEndpoint, &id)).transpose()?;
        let db = &state(ctx).db;
        let page = webhooks::deliveries(db, endpoint_id, status.map(Into::into), page_request(first, after)?).await?;
        // The page's events in one statement.
        let ids: Vec<i64> = page.items.iter().map(|d| d.event_id).collect();
        let events: HashMap<i64, outbox_event::Model> = outbox_event::Entity::find()
            .filter(outbox_event::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|event| (event.id, event))
            .collect();
        Ok(connection(
            page,
            |d| d.id,
            |delivery| WebhookDelivery {
                event: events.get(&delivery.event_id).cloned(),
                delivery,
            },
        ))
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Adds an endpoint (at most 20) with a new secret; events from now on are delivered to
    /// it. Audited (never the secret).
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn create_webhook_endpoint(&self, ctx: &Context<'_>, input: WebhookEndpointInput) -> Result<WebhookEndpoint> {
        let state = state(ctx);
        let allow_private = state.config.webhook_allow_private_targets;
        let endpoint = webhooks::create(&state.db, &viewer(ctx).actor(), input.into(), allow_private, now(ctx)).await?;
        Ok(WebhookEndpoint(endpoint))
    }

    /// Changes what the input gives; the same values again change nothing. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: WebhookEndpointInput,
    ) -> Result<WebhookEndpoint> {
        let id = from_id(Kind::WebhookEndpoint, &id)?;
        let state = state(ctx);
        let allow_private = state.config.webhook_allow_private_targets;
        let endpoint = webhooks::update(
            &state.db,
            &viewer(ctx).actor(),
            id,
            input.into(),
            allow_private,
            now(ctx),
        )
        .await?;
        Ok(WebhookEndpoint(endpoint))
    }

    /// A new secret for an endpoint; the old one stops signing at once. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn rotate_webhook_secret(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookEndpoint> {
        let id = from_id(Kind::WebhookEndpoint, &id)?;
        let endpoint = webhooks::rotate_secret(&state(ctx).db, &viewer(ctx).actor(), id, now(ctx)).await?;
        Ok(WebhookEndpoint(endpoint))
    }

    /// Deletes an endpoint and its deliveries (the events stay in the feed). Answers its id.
    /// Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn delete_webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let number = from_id(Kind::WebhookEndpoint, &id)?;
        webhooks::delete(&state(ctx).db, &viewer(ctx).actor(), number, now(ctx)).await?;
        Ok(id)
    }

    /// Sends a delivery again, whatever became of it: due now, attempts from zero. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn replay_webhook_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookDelivery> {
        let id = from_id(Kind::WebhookDelivery, &id)?;
        let db = &state(ctx).db;
        let delivery = webhooks::replay_delivery(db, &viewer(ctx).actor(), id, now(ctx)).await?;
        let event = outbox_event::Entity::find_by_id(delivery.event_id).one(db).await?;
        Ok(WebhookDelivery { delivery, event })
    }

    /// Sends an endpoint every event it wants from `sinceEventId` on (that one included, in
    /// feed order) again, those from before it existed too; at most 10,000 a call. Audited.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn replay_webhook_events(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        since_event_id: ID,
    ) -> Result<WebhookReplay> {
        let endpoint_id = from_id(Kind::WebhookEndpoint, &endpoint_id)?;
        let since = from_id(Kind::DomainEvent, &since_event_id)?;
        let replayed =
            webhooks::replay_since(&state(ctx).db, &viewer(ctx).actor(), endpoint_id, since, now(ctx)).await?;
        Ok(WebhookReplay {
            events: i32::try_from(replayed.events).unwrap_or(i32::MAX),
            last_event_id: replayed.last_event_id.map(|id| to_id(Kind::DomainEvent, id)),
            complete: replayed.complete,
        })
    }
}

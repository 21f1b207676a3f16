//! Payout wallets, each proved by a signed challenge.

use iocloud_db::ids::new_id;
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{DbError, Timestamp, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Payouts;
use crate::defaults::{Defaulted, make_default_in, remove_in};
use crate::{Action, Actor, Error, ErrorCode, Result};

/// How long a challenge may be signed and sent back.
const CHALLENGE_SECS: i64 = 300;
/// Wallets an organisation may keep.
const MAX_WALLETS: i64 = 20;

/// A wallet to prove: its address.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "WalletChallengeInput")
)]
#[serde(deny_unknown_fields)]
pub struct WalletChallengeRequest {
    /// The wallet's address (base58).
    pub address: String,
}

/// The message to sign with the wallet's key, as wallets sign messages.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "WalletChallenge")
)]
pub struct WalletChallenge {
    /// `wch_…`: send it back with the signature.
    pub id: String,
    pub address: String,
    /// Sign exactly these bytes (UTF-8).
    pub message: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// A signed challenge: proof the organisation holds the wallet.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "WalletInput")
)]
#[serde(deny_unknown_fields)]
pub struct WalletRequest {
    /// The challenge's id (`wch_…`).
    pub challenge_id: String,
    /// The wallet's ed25519 signature of the challenge's message, base58.
    pub signature: String,
    /// A name to tell wallets apart.
    #[serde(default)]
    pub label: Option<String>,
}

/// A wallet payouts may go to.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Wallet")
)]
pub struct Wallet {
    /// `wal_…`.
    pub id: String,
    pub address: String,
    pub label: Option<String>,
    /// Payouts go here unless told otherwise.
    pub is_default: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

const WALLET_COLUMNS: &str = "id, address, label, is_default, created_at";

impl Payouts {
    /// A challenge for `address`, to sign with its key within five minutes.
    pub async fn wallet_challenge(
        &self,
        actor: &Actor,
        request: &WalletChallengeRequest,
    ) -> Result<WalletChallenge> {
        actor.authorize(Action::BillingManage)?;
        let address = request.address.trim();
        if !is_address(address) {
            return Err(Error::validation(
                "address",
                "a Solana address (32 bytes in base58)",
            ));
        }
        let id = new_id("wch");
        let now = now_micros();
        let expires_at = now + CHALLENGE_SECS * MICROS_PER_SEC;
        // The message says what is signed and for whom, so a signature made for one
        // organisation, or for something else, proves nothing here.
        let message = format!(
            "IO Cloud payout wallet\norganization: {}\naddress: {address}\nchallenge: {id}\nexpires: {}",
            actor.org_id,
            Timestamp::from_micros(expires_at)
        );
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO wallet_challenges (id, org_id, address, message, expires_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(&id)
        .bind(&actor.org_id)
        .bind(address)
        .bind(&message)
        .bind(expires_at)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(WalletChallenge {
            id,
            address: address.to_string(),
            message,
            expires_at: Timestamp::from_micros(expires_at),
        })
    }

    /// Adds the wallet a signed challenge proves; the first is the default. The challenge is
    /// spent whether or not the signature verifies.
    pub async fn add_wallet(&self, actor: &Actor, request: &WalletRequest) -> Result<Wallet> {
        actor.authorize(Action::BillingManage)?;
        let label = match request.label.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(l) => Some(crate::types::parse_name("label", l)?),
        };
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        // Spent here, in the same transaction: two requests racing with one challenge cannot
        // both use it.
        let challenge: Option<(String, String)> = tx_run!(&mut tx, |c| sqlx::query_as(
            "UPDATE wallet_challenges SET used_at = $1 \
             WHERE id = $2 AND org_id = $3 AND used_at IS NULL AND expires_at > $1 RETURNING address, message"
        )
        .bind(now)
        .bind(request.challenge_id.trim())
        .bind(&actor.org_id)
        .fetch_optional(c)
        .await)
        .map_err(DbError::from)?;
        let Some((address, message)) = challenge else {
            return Err(Error::conflict(
                ErrorCode::NoChallenge,
                "no such challenge, or it expired or was used: ask for a new one",
            ));
        };
        if !iocloud_billing::rails::solana::signed_by(&address, &message, &request.signature) {
            // The challenge stays spent: a wrong signature cannot be retried against it.
            tx.commit().await?;
            return Err(Error::validation(
                "signature",
                "not the wallet's signature of the challenge",
            ));
        }
        let (count, has_default): (i64, i64) = tx_run!(&mut tx, |c| sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN is_default THEN 1 ELSE 0 END), 0) FROM payout_wallets WHERE org_id = $1"
        )
        .bind(&actor.org_id)
        .fetch_one(c)
        .await)
        .map_err(DbError::from)?;
        if count >= MAX_WALLETS {
            return Err(Error::conflict(
                ErrorCode::QuotaExceeded,
                format!("at most {MAX_WALLETS} wallets: remove one first"),
            ));
        }
        let id = new_id("wal");
        let inserted = tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO payout_wallets (id, org_id, address, label, is_default, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (org_id, address) DO NOTHING"
        )
        .bind(&id)
        .bind(&actor.org_id)
        .bind(&address)
        .bind(&label)
        .bind(has_default == 0)
        .bind(actor.id())
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        if inserted == 0 {
            // Proved again: the wallet as it is.
            let sql = format!(
                "SELECT {WALLET_COLUMNS} FROM payout_wallets WHERE org_id = $1 AND address = $2"
            );
            let wallet: Wallet = db_run!(&self.db, |p| sqlx::query_as(&sql)
                .bind(&actor.org_id)
                .bind(&address)
                .fetch_one(p)
                .await)
            .map_err(DbError::from)?;
            return Ok(wallet);
        }
        self.wallet(actor, &id).await
    }

    /// The organisation's wallets, oldest first.
    pub async fn wallets(&self, actor: &Actor) -> Result<Vec<Wallet>> {
        actor.authorize(Action::BillingRead)?;
        let sql = format!(
            "SELECT {WALLET_COLUMNS} FROM payout_wallets WHERE org_id = $1 ORDER BY created_at, id"
        );
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?)
    }

    /// One of the organisation's wallets; another's reads as missing.
    pub async fn wallet(&self, actor: &Actor, id: &str) -> Result<Wallet> {
        actor.authorize(Action::BillingRead)?;
        let sql =
            format!("SELECT {WALLET_COLUMNS} FROM payout_wallets WHERE id = $1 AND org_id = $2");
        let wallet: Option<Wallet> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(&actor.org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        wallet.ok_or(Error::NotFound("wallet"))
    }

    /// Makes a wallet the default.
    pub async fn set_default_wallet(&self, actor: &Actor, id: &str) -> Result<Wallet> {
        actor.authorize(Action::BillingManage)?;
        self.wallet(actor, id).await?;
        let mut tx = self.db.begin().await?;
        make_default_in(&mut tx, Defaulted::PayoutWallets, &actor.org_id, id).await?;
        tx.commit().await?;
        self.wallet(actor, id).await
    }

    /// Removes a wallet; if it was the default, the newest left becomes the default.
    pub async fn remove_wallet(&self, actor: &Actor, id: &str) -> Result<()> {
        actor.authorize(Action::BillingManage)?;
        let wallet = self.wallet(actor, id).await?;
        let mut tx = self.db.begin().await?;
        remove_in(
            &mut tx,
            Defaulted::PayoutWallets,
            &actor.org_id,
            id,
            wallet.is_default,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// 32 bytes in base58 (32 to 44 characters of its alphabet).
fn is_address(text: &str) -> bool {
    (32..=44).contains(&text.len())
        && bs58_alphabet(text)
        && iocloud_billing::rails::solana::Pubkey::try_from(text).is_ok()
}

fn bs58_alphabet(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l'))
}

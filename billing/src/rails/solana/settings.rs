//! How the crypto rail reaches Solana: the node, the commitment it credits at, the three mints
//! and what each credits, and the treasury's key (read from its file, never printed).

use std::fmt;
use std::path::PathBuf;

use solana_keypair::Keypair;
use solana_pubkey::Pubkey;
use solana_signer::Signer;

use super::token::ChainToken;
use crate::{BillingError, Result};

pub const RPC_URL_VAR: &str = "IOCLOUD_SOLANA_RPC_URL";
pub const COMMITMENT_VAR: &str = "IOCLOUD_SOLANA_COMMITMENT";
pub const MINT_IOSD_VAR: &str = "IOCLOUD_SOLANA_MINT_IOSD";
pub const MINT_USDC_VAR: &str = "IOCLOUD_SOLANA_MINT_USDC";
pub const MINT_IO_VAR: &str = "IOCLOUD_SOLANA_MINT_IO";
pub const USDC_FEE_BPS_VAR: &str = "IOCLOUD_SOLANA_USDC_FEE_BPS";
pub const TREASURY_KEYPAIR_VAR: &str = "IOCLOUD_SOLANA_TREASURY_KEYPAIR";
/// USDC is credited as IOSD less this, in basis points.
pub const DEFAULT_USDC_FEE_BPS: u32 = 200;

/// The commitment deposits are credited at and payouts counted paid at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commitment {
    Confirmed,
    Finalized,
}

impl Commitment {
    pub fn parse(text: &str) -> Option<Commitment> {
        match text {
            "confirmed" => Some(Commitment::Confirmed),
            "finalized" => Some(Commitment::Finalized),
            _ => None,
        }
    }

    pub(super) fn config(self) -> solana_commitment_config::CommitmentConfig {
        match self {
            Commitment::Confirmed => solana_commitment_config::CommitmentConfig::confirmed(),
            Commitment::Finalized => solana_commitment_config::CommitmentConfig::finalized(),
        }
    }
}

/// How the rail reaches Solana.
pub struct SolanaSettings {
    pub rpc_url: String,
    /// `finalized` unless told otherwise: a deposit seen only at `confirmed` may still vanish.
    pub commitment: Commitment,
    /// The mints taken, each with the token it is. At least one.
    pub mints: Vec<(ChainToken, Pubkey)>,
    pub usdc_fee_bps: u32,
    /// Signs payouts and owns the token accounts deposits land in.
    pub treasury: Keypair,
}

impl fmt::Debug for SolanaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolanaSettings")
            .field("rpc_url", &self.rpc_url)
            .field("commitment", &self.commitment)
            .field("mints", &self.mints)
            .field("usdc_fee_bps", &self.usdc_fee_bps)
            .field("treasury", &self.treasury.pubkey())
            .finish()
    }
}

/// The settings as given (by the environment or the config file), before they are checked.
#[derive(Clone, Debug, Default)]
pub struct SolanaSettingsText {
    pub rpc_url: Option<String>,
    pub commitment: Option<String>,
    pub mint_iosd: Option<String>,
    pub mint_usdc: Option<String>,
    pub mint_io: Option<String>,
    pub usdc_fee_bps: Option<u32>,
    pub treasury_keypair: Option<PathBuf>,
}

impl SolanaSettingsText {
    /// `None` when no node is named (the rail is off); an error for anything named wrongly,
    /// since a deposit could then be taken and never credited.
    pub fn parse(&self) -> Result<Option<SolanaSettings>> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let Some(rpc_url) = given(&self.rpc_url) else {
            return Ok(None);
        };
        let bad = |what: String| BillingError::Internal(what);
        let commitment = match given(&self.commitment) {
            None => Commitment::Finalized,
            Some(c) => Commitment::parse(&c).ok_or_else(|| {
                bad(format!(
                    "{COMMITMENT_VAR} is {c:?}: use confirmed or finalized"
                ))
            })?,
        };
        let mut mints = Vec::new();
        for (token, var, value) in [
            (ChainToken::Iosd, MINT_IOSD_VAR, &self.mint_iosd),
            (ChainToken::Usdc, MINT_USDC_VAR, &self.mint_usdc),
            (ChainToken::Io, MINT_IO_VAR, &self.mint_io),
        ] {
            if let Some(text) = given(value) {
                let mint: Pubkey = text
                    .parse()
                    .map_err(|_| bad(format!("{var} is not a Solana address")))?;
                mints.push((token, mint));
            }
        }
        if mints.is_empty() {
            return Err(bad(format!(
                "{RPC_URL_VAR} is set but no mint is: set {MINT_IOSD_VAR}, {MINT_USDC_VAR} or {MINT_IO_VAR}"
            )));
        }
        let fee = self.usdc_fee_bps.unwrap_or(DEFAULT_USDC_FEE_BPS);
        if fee > 10_000 {
            return Err(bad(format!("{USDC_FEE_BPS_VAR} is over 10000")));
        }
        let path = self.treasury_keypair.as_ref().ok_or_else(|| {
            bad(format!(
                "{RPC_URL_VAR} is set but {TREASURY_KEYPAIR_VAR} is not"
            ))
        })?;
        Ok(Some(SolanaSettings {
            rpc_url,
            commitment,
            mints,
            usdc_fee_bps: fee,
            treasury: read_keypair(path)?,
        }))
    }
}

/// A keypair file in the Solana CLI's form: a JSON array of the 64 bytes (secret, then public).
/// Errors name the file, never its content.
pub fn read_keypair(path: &std::path::Path) -> Result<Keypair> {
    let unreadable = |why: &str| {
        BillingError::Internal(format!("{TREASURY_KEYPAIR_VAR}: {} {why}", path.display()))
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(&e.to_string()))?;
    let bytes: Vec<u8> =
        serde_json::from_str(&text).map_err(|_| unreadable("is not a JSON array of bytes"))?;
    Keypair::try_from(bytes.as_slice()).map_err(|_| unreadable("is not a 64-byte keypair"))
}

//! The crypto rail's client: Solana through `solana-rpc-client` (nonblocking), with the
//! treasury's key. It reads what reached the treasury (deposits by Solana Pay transfer
//! requests) and, for payouts, builds and signs transfers out of it; crediting and debiting
//! the ledger is the caller's ([`send`] says how a payout is paid at most once).
//!
//! Every read is at the configured commitment (`finalized` by default): a transaction seen only
//! at `confirmed` may still be dropped by a fork, and a deposit is credited only once it cannot.
//! A failure the node may get over (a timeout, 429, 5xx, an unhealthy node) is
//! [`BillingError::Solana`] with `retryable`; the caller backs off and resumes from its cursor.

use std::sync::Arc;
use std::time::Duration;

use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind};
use solana_rpc_client_api::request::RpcError;
use solana_signer::Signer;

use crate::{BillingError, Result};

mod pay;
mod proof;
mod read;
mod send;
mod settings;
mod token;

pub use pay::TransferRequest;
pub use proof::signed_by;
pub use read::{ChainTransaction, ChainTransfer, SignatureInfo};
pub use send::{Landing, SignedTransfer, payout_reference};
pub use settings::{
    COMMITMENT_VAR, Commitment, DEFAULT_USDC_FEE_BPS, MINT_IO_VAR, MINT_IOSD_VAR, MINT_USDC_VAR,
    RPC_URL_VAR, SolanaSettings, SolanaSettingsText, TREASURY_KEYPAIR_VAR, USDC_FEE_BPS_VAR,
    read_keypair,
};
pub use solana_pubkey::Pubkey;
pub use solana_signature::Signature;
pub use token::{ChainToken, decimal, from_micros, to_micros};

/// How long one call to the node may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A mint the rail takes, as read from the chain at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintInfo {
    pub token: ChainToken,
    pub mint: Pubkey,
    pub decimals: u8,
    /// SPL Token or Token-2022: the program that owns the mint.
    pub program: Pubkey,
    /// The treasury's associated token account for this mint, where deposits land.
    pub treasury_account: Pubkey,
}

/// The client of the crypto rail: cheap to clone, one per process.
#[derive(Clone)]
pub struct SolanaRail {
    rpc: Arc<RpcClient>,
    commitment: Commitment,
    treasury: Arc<Keypair>,
    mints: Arc<Vec<MintInfo>>,
    usdc_fee_bps: u32,
}

impl std::fmt::Debug for SolanaRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolanaRail")
            .field("rpc", &self.rpc.url())
            .field("treasury", &self.treasury.pubkey())
            .field("mints", &self.mints)
            .finish_non_exhaustive()
    }
}

impl SolanaRail {
    /// Connects: reads each mint (its decimals and program) and makes the treasury's token
    /// accounts that are missing, so that a deposit always has somewhere to land.
    pub async fn connect(settings: SolanaSettings) -> Result<SolanaRail> {
        let rpc = RpcClient::new_with_timeout_and_commitment(
            settings.rpc_url.clone(),
            RPC_TIMEOUT,
            settings.commitment.config(),
        );
        let treasury = settings.treasury;
        let mut mints = Vec::new();
        for (token, mint) in &settings.mints {
            let account = rpc
                .get_account_with_commitment(mint, CommitmentConfig::confirmed())
                .await
                .map_err(failure)?
                .value
                .ok_or_else(|| {
                    BillingError::Internal(format!("mint {mint} ({}) does not exist", token.code()))
                })?;
            // A mint's layout: an optional authority (36 bytes), the supply (8), the decimals.
            let decimals = *account.data.get(44).ok_or_else(|| {
                BillingError::Internal(format!("{mint} ({}) is not a mint", token.code()))
            })?;
            let program = account.owner;
            let treasury_account =
                spl_associated_token_account_interface::address::get_associated_token_address_with_program_id(
                    &treasury.pubkey(),
                    mint,
                    &program,
                );
            mints.push(MintInfo {
                token: *token,
                mint: *mint,
                decimals,
                program,
                treasury_account,
            });
        }
        let rail = SolanaRail {
            rpc: Arc::new(rpc),
            commitment: settings.commitment,
            treasury: Arc::new(treasury),
            mints: Arc::new(mints),
            usdc_fee_bps: settings.usdc_fee_bps,
        };
        rail.open_treasury_accounts().await?;
        Ok(rail)
    }

    /// The treasury's wallet: the recipient of every transfer request.
    pub fn treasury(&self) -> Pubkey {
        self.treasury.pubkey()
    }

    pub fn mints(&self) -> &[MintInfo] {
        &self.mints
    }

    pub fn mint(&self, token: ChainToken) -> Option<&MintInfo> {
        self.mints.iter().find(|m| m.token == token)
    }

    /// The mint of `address`, if it is one of ours.
    pub fn mint_by_address(&self, address: &Pubkey) -> Option<&MintInfo> {
        self.mints.iter().find(|m| m.mint == *address)
    }

    /// The mint whose treasury token account is `account`.
    pub fn mint_by_treasury_account(&self, account: &Pubkey) -> Option<&MintInfo> {
        self.mints.iter().find(|m| m.treasury_account == *account)
    }

    pub fn usdc_fee_bps(&self) -> u32 {
        self.usdc_fee_bps
    }

    pub fn commitment(&self) -> Commitment {
        self.commitment
    }

    /// Makes each treasury token account that does not exist yet (idempotent on chain too: two
    /// replicas starting at once both succeed).
    async fn open_treasury_accounts(&self) -> Result<()> {
        for m in self.mints.iter() {
            let exists = self
                .rpc
                .get_account_with_commitment(&m.treasury_account, CommitmentConfig::confirmed())
                .await
                .map_err(failure)?
                .value
                .is_some();
            if exists {
                continue;
            }
            let create =
                spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
                    &self.treasury.pubkey(),
                    &self.treasury.pubkey(),
                    &m.mint,
                    &m.program,
                );
            // Idempotent on chain, so a transaction that expired unconfirmed (a busy node) is
            // simply made again.
            let mut tries = 0;
            loop {
                tries += 1;
                match self.send_and_confirm(std::slice::from_ref(&create)).await {
                    Ok(_) => break,
                    Err(BillingError::Solana {
                        retryable: true, ..
                    }) if tries < 3 => continue,
                    Err(e) => return Err(e),
                }
            }
            tracing::info!(mint = %m.mint, account = %m.treasury_account, "opened a treasury token account");
        }
        Ok(())
    }

    /// Signs `instructions` with the treasury, sends them and waits until they are confirmed or
    /// their blockhash has expired. For the treasury's own housekeeping, not for payouts, which
    /// keep their signed bytes before sending.
    async fn send_and_confirm(
        &self,
        instructions: &[solana_instruction::Instruction],
    ) -> Result<Signature> {
        let (blockhash, last_valid) = self
            .rpc
            .get_latest_blockhash_with_commitment(CommitmentConfig::confirmed())
            .await
            .map_err(failure)?;
        let tx = solana_transaction::Transaction::new_signed_with_payer(
            instructions,
            Some(&self.treasury.pubkey()),
            &[self.treasury.as_ref()],
            blockhash,
        );
        // Preflight against the same bank the blockhash came from: a finalized bank does not
        // know a confirmed blockhash yet.
        let signature = self
            .rpc
            .send_transaction_with_config(
                &tx,
                solana_rpc_client_api::config::RpcSendTransactionConfig {
                    preflight_commitment: Some(CommitmentConfig::confirmed().commitment),
                    ..Default::default()
                },
            )
            .await
            .map_err(failure)?;
        loop {
            let status = self
                .rpc
                .get_signature_statuses(&[signature])
                .await
                .map_err(failure)?
                .value
                .into_iter()
                .next()
                .flatten();
            if let Some(status) = status {
                if let Some(err) = status.err {
                    return Err(BillingError::Solana {
                        retryable: false,
                        message: format!("{signature} failed: {err}"),
                    });
                }
                if status.satisfies_commitment(CommitmentConfig::confirmed()) {
                    return Ok(signature);
                }
            }
            let height = self
                .rpc
                .get_block_height_with_commitment(CommitmentConfig::confirmed())
                .await
                .map_err(failure)?;
            if height > last_valid {
                return Err(BillingError::Solana {
                    retryable: true,
                    message: format!("{signature} expired before it was confirmed"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Signatures touching `address`, newest first, at the rail's commitment: those after
    /// `until` (exclusive), starting before `before`, at most `limit` (1 to 1,000).
    pub async fn signatures(
        &self,
        address: &Pubkey,
        until: Option<Signature>,
        before: Option<Signature>,
        limit: usize,
    ) -> Result<Vec<SignatureInfo>> {
        let found = self
            .rpc
            .get_signatures_for_address_with_config(
                address,
                GetConfirmedSignaturesForAddress2Config {
                    before,
                    until,
                    limit: Some(limit),
                    commitment: Some(self.commitment.config()),
                },
            )
            .await
            .map_err(failure)?;
        found.into_iter().map(SignatureInfo::try_from).collect()
    }
}

/// A Solana Pay reference key: a fresh public key whose secret is thrown away, so only the
/// payment it was handed out for carries it.
pub fn fresh_reference() -> Pubkey {
    Keypair::new().pubkey()
}

/// A client error in our terms: retryable unless the node answered that it refused the request.
pub(crate) fn failure(e: ClientError) -> BillingError {
    let retryable = match e.kind() {
        ErrorKind::Io(_) | ErrorKind::Reqwest(_) | ErrorKind::Middleware(_) => true,
        // -32005: node unhealthy (behind); -32004 / -32007 / -32009: a slot or block not yet
        // available. Others (a preflight failure, bad params) are answers, not absences.
        ErrorKind::RpcError(RpcError::RpcResponseError { code, .. }) => {
            matches!(code, -32005 | -32004 | -32007 | -32009 | -32014 | -32016)
        }
        ErrorKind::RpcError(RpcError::RpcRequestError(_)) => true,
        _ => false,
    };
    BillingError::Solana {
        retryable,
        message: e.to_string(),
    }
}

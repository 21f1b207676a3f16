//! Reading the chain: which signatures touched an address, and what a transaction moved into
//! the treasury. A transaction is fetched whole (base64, versions 0 and legacy) and decoded
//! here: every top-level SPL Token instruction that moves tokens becomes a [`ChainTransfer`],
//! numbered by its instruction index, which with the signature names it once and for all.

use solana_pubkey::Pubkey;
use solana_rpc_client_api::config::RpcTransactionConfig;
use solana_rpc_client_api::request::RpcRequest;
use solana_rpc_client_api::response::RpcConfirmedTransactionStatusWithSignature;
use solana_signature::Signature;
use solana_transaction_status_client_types::{
    EncodedConfirmedTransactionWithStatusMeta, UiTransactionEncoding, UiTransactionStatusMeta,
    UiTransactionTokenBalance,
};

use super::{SolanaRail, failure};
use crate::{BillingError, Result};

/// One entry of an address's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureInfo {
    pub signature: Signature,
    pub slot: u64,
    /// The transaction failed on chain (its fee was taken, nothing else moved).
    pub failed: bool,
}

impl TryFrom<RpcConfirmedTransactionStatusWithSignature> for SignatureInfo {
    type Error = BillingError;

    fn try_from(s: RpcConfirmedTransactionStatusWithSignature) -> Result<Self> {
        Ok(SignatureInfo {
            signature: s.signature.parse().map_err(|_| BillingError::Solana {
                retryable: false,
                message: format!(
                    "the node answered a signature that does not parse: {}",
                    s.signature
                ),
            })?,
            slot: s.slot,
            failed: s.err.is_some(),
        })
    }
}

/// A transaction as the rail reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTransaction {
    pub signature: Signature,
    pub slot: u64,
    /// Unix seconds, when the node knows.
    pub block_time: Option<i64>,
    pub failed: bool,
    pub transfers: Vec<ChainTransfer>,
}

/// A top-level token transfer of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTransfer {
    /// The instruction's index in the transaction.
    pub instruction: u32,
    /// `transferChecked` (names its mint and decimals) rather than a plain `transfer`.
    pub checked: bool,
    /// The mint, when the instruction or the token balances name it.
    pub mint: Option<Pubkey>,
    pub destination: Pubkey,
    /// What the instruction says it moves, in base units.
    pub amount: u64,
    /// What the destination's token balance rose by in this transaction (all instructions).
    pub received: u64,
    /// Read-only, non-signer extra accounts of the instruction: Solana Pay reference keys.
    pub references: Vec<Pubkey>,
}

/// SPL Token's and Token-2022's instruction tags (the same in both).
const TRANSFER: u8 = 3;
const TRANSFER_CHECKED: u8 = 12;

impl SolanaRail {
    /// The transaction `signature` at the rail's commitment; `None` when the node has no
    /// such transaction there (not yet finalized, dropped, or never sent).
    pub async fn transaction(&self, signature: &Signature) -> Result<Option<ChainTransaction>> {
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Base64),
            commitment: Some(self.commitment.config()),
            max_supported_transaction_version: Some(0),
        };
        // The node answers `null` for a transaction it does not have, which the client's own
        // `get_transaction` reports as a parse failure, indistinguishable from a bad answer.
        let found: Option<EncodedConfirmedTransactionWithStatusMeta> = self
            .rpc
            .send(
                RpcRequest::GetTransaction,
                serde_json::json!([signature.to_string(), config]),
            )
            .await
            .map_err(failure)?;
        let Some(found) = found else {
            return Ok(None);
        };
        let bad = |why: &str| BillingError::Solana {
            retryable: false,
            message: format!("transaction {signature}: {why}"),
        };
        let tx = found
            .transaction
            .transaction
            .decode()
            .ok_or_else(|| bad("does not decode"))?;
        let meta = found
            .transaction
            .meta
            .ok_or_else(|| bad("the node gave no status"))?;
        let message = &tx.message;
        let mut keys: Vec<Pubkey> = message.static_account_keys().to_vec();
        let loaded: Option<_> = meta.loaded_addresses.clone().into();
        if let Some(loaded) = loaded {
            let loaded: solana_transaction_status_client_types::UiLoadedAddresses = loaded;
            for key in loaded.writable.iter().chain(&loaded.readonly) {
                keys.push(
                    key.parse()
                        .map_err(|_| bad("a loaded address does not parse"))?,
                );
            }
        }
        let signers = usize::from(message.header().num_required_signatures);
        let token_programs = [spl_token_interface::ID, spl_token_2022_id()];
        let mut transfers = Vec::new();
        for (index, ix) in message.instructions().iter().enumerate() {
            let Some(program) = keys.get(usize::from(ix.program_id_index)) else {
                continue;
            };
            if !token_programs.contains(program) {
                continue;
            }
            let key = |n: usize| {
                ix.accounts
                    .get(n)
                    .and_then(|&i| keys.get(usize::from(i)).map(|k| (usize::from(i), *k)))
            };
            let (checked, destination_at, extra_from, amount, mint) = match ix.data.first() {
                Some(&TRANSFER_CHECKED) if ix.data.len() >= 10 => {
                    let amount = u64::from_le_bytes(ix.data[1..9].try_into().unwrap_or_default());
                    (true, 2, 4, amount, key(1).map(|(_, k)| k))
                }
                Some(&TRANSFER) if ix.data.len() >= 9 => {
                    let amount = u64::from_le_bytes(ix.data[1..9].try_into().unwrap_or_default());
                    (false, 1, 3, amount, None)
                }
                _ => continue,
            };
            let Some((destination_index, destination)) = key(destination_at) else {
                continue;
            };
            let (received, balance_mint) = balance_change(&meta, destination_index);
            let references = ix.accounts[extra_from.min(ix.accounts.len())..]
                .iter()
                .filter(|&&i| usize::from(i) >= signers)
                .filter_map(|&i| keys.get(usize::from(i)).copied())
                .collect();
            transfers.push(ChainTransfer {
                instruction: u32::try_from(index).unwrap_or(u32::MAX),
                checked,
                mint: mint.or(balance_mint),
                destination,
                amount,
                received,
                references,
            });
        }
        Ok(Some(ChainTransaction {
            signature: *signature,
            slot: found.slot,
            block_time: found.block_time,
            failed: meta.err.is_some(),
            transfers,
        }))
    }
}

/// Token-2022's program id.
fn spl_token_2022_id() -> Pubkey {
    // A constant of the chain; spelled out rather than pulling in the Token-2022 crate.
    Pubkey::from_str_const("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
}

/// How much the token balance at `account_index` rose in the transaction, and its mint.
fn balance_change(meta: &UiTransactionStatusMeta, account_index: usize) -> (u64, Option<Pubkey>) {
    let find = |balances: &Option<Vec<UiTransactionTokenBalance>>| {
        balances.as_ref().and_then(|all| {
            all.iter()
                .find(|b| usize::from(b.account_index) == account_index)
                .map(|b| {
                    (
                        b.ui_token_amount.amount.parse::<u64>().unwrap_or(0),
                        b.mint.parse::<Pubkey>().ok(),
                    )
                })
        })
    };
    let pre: Option<Vec<UiTransactionTokenBalance>> = meta.pre_token_balances.clone().into();
    let post: Option<Vec<UiTransactionTokenBalance>> = meta.post_token_balances.clone().into();
    let (before, _) = find(&pre).unwrap_or((0, None));
    match find(&post) {
        Some((after, mint)) => (after.saturating_sub(before), mint),
        None => (0, None),
    }
}

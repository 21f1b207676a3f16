//! Paying out of the treasury: a `transferChecked` to the recipient's associated token account
//! (made first, idempotently, when missing), with a memo and a reference key derived from the
//! payout, signed by the treasury.
//!
//! The caller keeps the signed bytes before sending them, sends the same bytes again until the
//! signature is finalized, and signs anew only once the blockhash can no longer land (the
//! finalized block height is past its last valid height), the signature is unknown and nothing
//! is found under the reference: so one payout is at most one transfer on chain.

use sha2::{Digest, Sha256};
use solana_commitment_config::CommitmentConfig;
use solana_instruction::AccountMeta;
use solana_pubkey::Pubkey;
use solana_rpc_client_api::config::RpcSendTransactionConfig;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction_status_client_types::TransactionConfirmationStatus;

use super::token::ChainToken;
use super::{SolanaRail, failure};
use crate::{BillingError, Result};

/// A transfer signed and not necessarily sent: everything needed to send it again, or to know
/// when it can no longer land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransfer {
    pub signature: Signature,
    /// The transaction as sent on the wire.
    pub wire: Vec<u8>,
    /// The last block height at which its blockhash is accepted.
    pub last_valid_height: u64,
}

/// What the chain knows of a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Landing {
    /// Never seen (not yet, or never).
    Unknown,
    /// Executed, not yet at the rail's commitment: it may still be dropped by a fork.
    Pending,
    /// At the rail's commitment, and it moved the tokens.
    Succeeded { slot: u64 },
    /// At the rail's commitment, and it failed: nothing moved but the fee.
    Failed {
        slot: u64,
        error: String,
        /// The source held too little (SPL Token's error 1): paying later may succeed.
        insufficient_funds: bool,
    },
}

/// The reference key of payout `id`: the same every time, so a transfer the payout made is
/// found under it whatever became of the stored signature.
pub fn payout_reference(id: &str) -> Pubkey {
    let digest = Sha256::digest(format!("iocloud payout reference\n{id}").as_bytes());
    Pubkey::new_from_array(digest.into())
}

impl SolanaRail {
    /// Signs a transfer of `amount` base units of `token` from the treasury to `owner`'s
    /// associated token account, with `memo` and `reference`. Nothing is sent.
    pub async fn sign_payout(
        &self,
        token: ChainToken,
        owner: &Pubkey,
        amount: u64,
        reference: &Pubkey,
        memo: &str,
    ) -> Result<SignedTransfer> {
        let mint = self.mint(token).ok_or_else(|| {
            BillingError::Internal(format!("no {} mint is configured", token.code()))
        })?;
        let treasury = self.treasury.pubkey();
        let destination =
            spl_associated_token_account_interface::address::get_associated_token_address_with_program_id(
                owner,
                &mint.mint,
                &mint.program,
            );
        let open =
            spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
                &treasury,
                owner,
                &mint.mint,
                &mint.program,
            );
        // The instruction's layout is the same in Token-2022; built for SPL Token, then pointed
        // at the mint's own program.
        let mut transfer = spl_token_interface::instruction::transfer_checked(
            &spl_token_interface::id(),
            &mint.treasury_account,
            &mint.mint,
            &destination,
            &treasury,
            &[],
            amount,
            mint.decimals,
        )
        .map_err(|e| BillingError::Internal(format!("a transfer instruction: {e}")))?;
        transfer.program_id = mint.program;
        // Solana Pay's way: the reference rides as a read-only key the program ignores.
        transfer
            .accounts
            .push(AccountMeta::new_readonly(*reference, false));
        let memo = spl_memo_interface::instruction::build_memo(
            &spl_memo_interface::v3::id(),
            memo.as_bytes(),
            &[],
        );
        let (blockhash, last_valid_height) = self
            .rpc
            .get_latest_blockhash_with_commitment(CommitmentConfig::confirmed())
            .await
            .map_err(failure)?;
        let tx = Transaction::new_signed_with_payer(
            &[open, transfer, memo],
            Some(&treasury),
            &[self.treasury.as_ref()],
            blockhash,
        );
        let wire = bincode::serialize(&tx)
            .map_err(|e| BillingError::Internal(format!("serialising a transaction: {e}")))?;
        Ok(SignedTransfer {
            signature: tx.signatures[0],
            wire,
            last_valid_height,
        })
    }

    /// Sends signed bytes. The first time (`preflight`) the node simulates them and refuses what
    /// would fail; again, they go straight to the leader, which drops a duplicate.
    pub async fn send_signed(&self, wire: &[u8], preflight: bool) -> Result<Signature> {
        let tx: Transaction = bincode::deserialize(wire)
            .map_err(|e| BillingError::Internal(format!("a stored transaction: {e}")))?;
        self.rpc
            .send_transaction_with_config(
                &tx,
                RpcSendTransactionConfig {
                    skip_preflight: !preflight,
                    preflight_commitment: Some(CommitmentConfig::confirmed().commitment),
                    ..Default::default()
                },
            )
            .await
            .map_err(failure)
    }

    /// What the chain knows of `signature`, searching its whole history.
    pub async fn landing(&self, signature: &Signature) -> Result<Landing> {
        let status = self
            .rpc
            .get_signature_statuses_with_history(&[*signature])
            .await
            .map_err(failure)?
            .value
            .into_iter()
            .next()
            .flatten();
        let Some(status) = status else {
            return Ok(Landing::Unknown);
        };
        let at_commitment = match self.commitment {
            super::Commitment::Finalized => {
                status.confirmation_status == Some(TransactionConfirmationStatus::Finalized)
            }
            super::Commitment::Confirmed => status.satisfies_commitment(self.commitment.config()),
        };
        if !at_commitment {
            return Ok(Landing::Pending);
        }
        Ok(match status.err {
            None => Landing::Succeeded { slot: status.slot },
            Some(err) => {
                let error = err.to_string();
                Landing::Failed {
                    slot: status.slot,
                    insufficient_funds: is_insufficient_funds(&err),
                    error,
                }
            }
        })
    }

    /// The block height at the rail's commitment: a blockhash whose last valid height is below
    /// it can no longer land, and whatever landed with it is visible at this commitment.
    pub async fn block_height(&self) -> Result<u64> {
        self.rpc
            .get_block_height_with_commitment(self.commitment.config())
            .await
            .map_err(failure)
    }

    /// The treasury's balance of `token` in base units, at `confirmed` (what is already spent
    /// there is spent).
    pub async fn treasury_balance(&self, token: ChainToken) -> Result<u64> {
        let mint = self.mint(token).ok_or_else(|| {
            BillingError::Internal(format!("no {} mint is configured", token.code()))
        })?;
        let balance = self
            .rpc
            .get_token_account_balance_with_commitment(
                &mint.treasury_account,
                CommitmentConfig::confirmed(),
            )
            .await
            .map_err(failure)?
            .value;
        balance.amount.parse().map_err(|_| BillingError::Solana {
            retryable: false,
            message: format!("the node answered a balance that does not parse: {balance:?}"),
        })
    }
}

/// SPL Token's `InsufficientFunds` (its custom error 1) in the transfer, the second
/// instruction of every payout. Read through the error's serde form, as the node writes it.
fn is_insufficient_funds(err: &impl serde::Serialize) -> bool {
    let Ok(value) = serde_json::to_value(err) else {
        return false;
    };
    let Some([index, error]) = value
        .get("InstructionError")
        .and_then(|v| v.as_array())
        .map(Vec::as_slice)
    else {
        return false;
    };
    index.as_u64() == Some(1) && error.get("Custom").and_then(|c| c.as_u64()) == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_funds_is_read_from_the_transfer() {
        let err = serde_json::json!({"InstructionError": [1, {"Custom": 1}]});
        assert!(is_insufficient_funds(&err));
        let other = serde_json::json!({"InstructionError": [0, {"Custom": 1}]});
        assert!(!is_insufficient_funds(&other));
        assert!(!is_insufficient_funds(&serde_json::json!(
            "BlockhashNotFound"
        )));
    }

    #[test]
    fn a_payout_reference_is_its_own_and_stable() {
        assert_eq!(payout_reference("po_1"), payout_reference("po_1"));
        assert_ne!(payout_reference("po_1"), payout_reference("po_2"));
    }
}

//! Proof that a wallet is held: its key signed our challenge (ed25519 over the message's
//! bytes, as wallets sign messages). A payout goes only to a wallet so proved, never to an
//! address someone typed.

use solana_pubkey::Pubkey;
use solana_signature::Signature;

/// True when `signature` (base58, as wallets give it) is `address`'s signature of `message`.
/// Anything malformed is simply not a proof.
pub fn signed_by(address: &str, message: &str, signature: &str) -> bool {
    let (Ok(key), Ok(signature)) = (
        address.parse::<Pubkey>(),
        signature.trim().parse::<Signature>(),
    ) else {
        return false;
    };
    signature.verify(key.as_ref(), message.as_bytes())
}

#[cfg(test)]
mod tests {
    use solana_keypair::Keypair;
    use solana_signer::Signer;

    use super::*;

    #[test]
    fn only_the_wallets_own_signature_of_the_message_proves_it() {
        let wallet = Keypair::new();
        let other = Keypair::new();
        let message = "IO Cloud payout wallet\nnonce: 1";
        let signed = wallet.sign_message(message.as_bytes()).to_string();
        let address = wallet.pubkey().to_string();
        assert!(signed_by(&address, message, &signed));
        assert!(!signed_by(
            &address,
            "IO Cloud payout wallet\nnonce: 2",
            &signed
        ));
        let by_other = other.sign_message(message.as_bytes()).to_string();
        assert!(!signed_by(&address, message, &by_other));
        assert!(!signed_by("not an address", message, &signed));
        assert!(!signed_by(&address, message, "not a signature"));
        assert!(!signed_by(&address, message, ""));
    }
}

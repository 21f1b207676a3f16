"""A Solana JSON-RPC node on loopback for integration tests, backed by LiteSVM.

    python tests/peers/solana_peer.py --port 8899 [--tag TEXT] [--pidfile FILE] [--slot-ms 50]

The control plane talks to Solana through `solana-rpc-client` (the nonblocking `RpcClient`). A
test validator (agave's `solana-test-validator`) is a prebuilt binary that cannot be fetched
here, and a stub that answers canned JSON proves only that the stub agrees with itself. This
peer sits in between: `solders` (PyPI, pinned in infra/scripts/services.sh) bundles LiteSVM,
which executes the real SPL Token, Token-2022, associated-token-account and Memo programs, and
this file wraps it in the JSON-RPC surface and answer shapes of an agave 3.1 node:

- a slot clock (one slot every `--slot-ms`, default 50 ms; block height = slot). A transaction
  lands in the current slot as `processed`, is `confirmed` one slot later and `finalized` 32
  slots after that. Reads at a commitment see only what that commitment has reached, account
  state included (see `Chain.account_at`);
- blockhashes live 150 blocks; a transaction whose blockhash is unknown to the bank it meets
  fails preflight with `BlockhashNotFound`, or is silently dropped when preflight is skipped,
  as the cluster does;
- a failed transaction that reached execution is recorded with its `err` and its fee taken, as
  on chain; one that could not pay its fee never lands;
- every account key of a transaction (read-only non-signers such as Solana Pay reference keys
  included) indexes its signature for `getSignaturesForAddress`;
- test controls under `/_control/` (outside JSON-RPC): faults (timeouts, HTTP 429 and 503, node
  unhealthy), transactions that confirm and are then dropped by a fork, clock control, and
  fixtures (keypairs, mints, token accounts, transfers, ten thousand transfers at once) so
  that tests need not build every transaction themselves. `GET /_control/launcher` answers
  `--tag`, so a caller can tell whether the process listening is this peer, and which version.

What it does not do: no websocket (PubSub) endpoint, no `getBlock`, no votes, rewards, forks
other than the `drop` control, or priority fees (`getFeeForMessage` counts 5000 lamports per
signature); preflight runs against the newest state whatever `preflightCommitment` says (only
the blockhash and duplicate checks follow the commitment); `jsonParsed` decodes the System,
SPL Token and Memo instructions and token accounts, and answers other accounts in base64 as the
node does for programs it has no parser for.

Everything is kept in memory and is lost when the process ends. LiteSVM is not thread-safe: one
lock guards it and the ledger kept beside it, while answers already rendered are cached so
reads spend little time under the lock.
"""

import argparse
import base64
import bisect
import collections
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from solders.account import Account
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message, MessageV0, from_bytes_versioned
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.system_program import CreateAccountParams, TransferParams, create_account, transfer
from solders.token.associated import get_associated_token_address
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import (
    InstructionErrorBorshIO,
    InstructionErrorCustom,
    TransactionErrorDuplicateInstruction,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionErrorProgramExecutionTemporarilyRestricted,
)

API_VERSION = "3.1.14"
FEATURE_SET = 3294202862
SLOTS_PER_EPOCH = 432_000
FIRST_SLOT = 1_000  # the clock starts here, so that finalized slots exist from the start
MAX_PROCESSING_AGE = 150  # blocks a blockhash stays valid
CONFIRMATION_LAG = 1  # slots from processed to confirmed
FINALIZATION_LAG = 32  # slots from confirmed to finalized
STATUS_CACHE_SLOTS = 300  # getSignatureStatuses without history sees this far back
MAX_SIGNATURE_STATUSES = 256
MAX_SIGNATURES_FOR_ADDRESS = 1000
LAMPORTS_PER_SIGNATURE = 5000
LAMPORTS_PER_SOL = 1_000_000_000
DEFAULT_DROP_AFTER = 8  # slots a dropped transaction stays visible
FAUCET_LAMPORTS = 10**9 * LAMPORTS_PER_SOL  # what requestAirdrop and the fixtures hand out

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
TOKEN_PROGRAMS = {TOKEN_PROGRAM: "spl-token", TOKEN_2022_PROGRAM: "spl-token-2022"}
ATA_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
MEMO_V1_PROGRAM = Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
MEMO_PROGRAMS = {MEMO_PROGRAM, MEMO_V1_PROGRAM}
ALT_PROGRAM = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")

COMMITMENTS = {
    "processed": "processed",
    "recent": "processed",
    "confirmed": "confirmed",
    "single": "confirmed",
    "singleGossip": "confirmed",
    "finalized": "finalized",
    "root": "finalized",
    "max": "finalized",
}

# --- encodings ------------------------------------------------------------------------------

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}


def b58encode(data):
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text):
    n = 0
    for c in text:
        if c not in B58_INDEX:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + B58_INDEX[c]
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")


def zstd_frame(data):
    """A zstd frame of raw (stored) blocks: what `base64+zstd` asks for, valid for any zstd
    decoder, without a compressor (the standard library has none)."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out.append(0xA0)  # single segment, 4-byte content size, no checksum
    out += struct.pack("<I", len(data))
    block = 128 * 1024
    if not data:
        out += (1).to_bytes(3, "little")
    for start in range(0, len(data), block):
        chunk = data[start : start + block]
        last = 1 if start + block >= len(data) else 0
        out += ((len(chunk) << 3) | last).to_bytes(3, "little")
        out += chunk
    return bytes(out)


def ui_amount_string(amount, decimals):
    if decimals == 0:
        return str(amount)
    digits = str(amount).rjust(decimals + 1, "0")
    whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def ui_token_amount(amount, decimals):
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": amount / (10**decimals),
        "uiAmountString": ui_amount_string(amount, decimals),
    }


# --- errors -----------------------------------------------------------------------------------


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message):
    return RpcError(-32602, message)


# How agave's TransactionError and InstructionError print (`Display`), for error messages.
TRANSACTION_ERROR_TEXT = {
    "AccountInUse": "Account in use",
    "AccountLoadedTwice": "Account loaded twice",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "ProgramAccountNotFound": "Attempt to load a program that does not exist",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
    "AlreadyProcessed": "This transaction has already been processed",
    "BlockhashNotFound": "Blockhash not found",
    "CallChainTooDeep": "Loader call chain is too deep",
    "MissingSignatureForFee": "Transaction requires a fee but has no signature present",
    "InvalidAccountIndex": "Transaction contains an invalid account reference",
    "SignatureFailure": "Transaction did not pass signature verification",
    "InvalidProgramForExecution": "This program may not be used for executing instructions",
    "SanitizeFailure": "Transaction failed to sanitize accounts offsets correctly",
    "ClusterMaintenance": "Transactions are currently disabled due to cluster maintenance",
    "UnsupportedVersion": "Transaction version is unsupported",
    "InvalidWritableAccount": "Transaction loads a writable account that cannot be written",
    "TooManyAccountLocks": "Transaction locked too many accounts",
    "AddressLookupTableNotFound": "Transaction loads an address table account that doesn't exist",
    "InvalidRentPayingAccount": (
        "Transaction leaves an account with a lower balance than rent-exempt minimum"
    ),
    "UnbalancedTransaction": "Sum of account balances before and after transaction do not match",
}

INSTRUCTION_ERROR_TEXT = {
    "GenericError": "generic instruction error",
    "InvalidArgument": "invalid program argument",
    "InvalidInstructionData": "invalid instruction data",
    "InvalidAccountData": "invalid account data for instruction",
    "AccountDataTooSmall": "account data too small for instruction",
    "InsufficientFunds": "insufficient funds for instruction",
    "IncorrectProgramId": "incorrect program id for instruction",
    "MissingRequiredSignature": "missing required signature for instruction",
    "AccountAlreadyInitialized": "instruction requires an uninitialized account",
    "UninitializedAccount": "instruction requires an initialized account",
    "UnbalancedInstruction": "sum of account balances before and after instruction do not match",
    "ModifiedProgramId": "instruction illegally modified the program id of an account",
    "ExternalAccountLamportSpend": (
        "instruction spent from the balance of an account it does not own"
    ),
    "ExternalAccountDataModified": "instruction modified data of an account it does not own",
    "ReadonlyLamportChange": "instruction changed the balance of a read-only account",
    "ReadonlyDataModified": "instruction modified data of a read-only account",
    "DuplicateAccountIndex": "instruction contains duplicate accounts",
    "ExecutableModified": "instruction changed executable bit of an account",
    "RentEpochModified": "instruction modified rent epoch of an account",
    "NotEnoughAccountKeys": "insufficient account keys for instruction",
    "AccountNotExecutable": "instruction expected an executable account",
    "InvalidError": "program returned invalid error code",
    "UnsupportedProgramId": "Unsupported program id",
    "CallDepth": "Cross-program invocation call depth too deep",
    "MissingAccount": "An account required by the instruction is missing",
    "InvalidSeeds": "Provided seeds do not result in a valid address",
    "AccountNotRentExempt": (
        "An account does not have enough lamports to be rent-exempt"
    ),
    "ComputationalBudgetExceeded": "Computational budget exceeded",
    "PrivilegeEscalation": "Cross-program invocation with unauthorized signer or writable account",
    "ProgramFailedToComplete": "Program failed to complete",
    "ProgramFailedToCompile": "Program failed to compile",
    "Immutable": "Account is immutable",
    "IncorrectAuthority": "Incorrect authority provided",
    "BorshIoError": "Failed to serialize or deserialize account data",
    "InvalidAccountOwner": "Invalid account owner",
    "ArithmeticOverflow": "Program arithmetic overflowed",
    "IllegalOwner": "Provided owner is not allowed",
}


def enum_name(value):
    return str(value).rsplit(".", 1)[-1]


def instruction_error_json(err):
    if isinstance(err, InstructionErrorCustom):
        return {"Custom": err.code}
    if isinstance(err, InstructionErrorBorshIO):
        return "BorshIoError"
    return enum_name(err)


def transaction_error_json(err):
    """A solders TransactionError as agave serializes it in JSON answers."""
    if err is None:
        return None
    if isinstance(err, TransactionErrorFieldless):
        return enum_name(err)
    if isinstance(err, TransactionErrorInstructionError):
        return {"InstructionError": [err.index, instruction_error_json(err.err)]}
    if isinstance(err, TransactionErrorDuplicateInstruction):
        return {"DuplicateInstruction": err.index}
    if isinstance(err, TransactionErrorInsufficientFundsForRent):
        return {"InsufficientFundsForRent": {"account_index": err.account_index}}
    if isinstance(err, TransactionErrorProgramExecutionTemporarilyRestricted):
        return {"ProgramExecutionTemporarilyRestricted": {"account_index": err.account_index}}
    return enum_name(err)


def transaction_error_text(err_json):
    """agave's `Display` of a TransactionError given as JSON."""
    if isinstance(err_json, str):
        return TRANSACTION_ERROR_TEXT.get(err_json, err_json)
    (name, value), = err_json.items()
    if name == "InstructionError":
        index, inner = value
        if isinstance(inner, dict) and "Custom" in inner:
            text = f"custom program error: {inner['Custom']:#x}"
        else:
            text = INSTRUCTION_ERROR_TEXT.get(inner, inner)
        return f"Error processing Instruction {index}: {text}"
    if name == "DuplicateInstruction":
        return f"Transaction contains a duplicate instruction ({value}) that is not allowed"
    if name == "InsufficientFundsForRent":
        return (
            f"Transaction results in an account ({value['account_index']}) with insufficient "
            "funds for rent"
        )
    return name


def preflight_failure(err_json, logs=None, units=0, return_data=None, accounts_size=None):
    """The -32002 error of a sendTransaction whose simulation failed."""
    return RpcError(
        -32002,
        f"Transaction simulation failed: {transaction_error_text(err_json)}",
        {
            "err": err_json,
            "logs": logs if logs is not None else [],
            "accounts": None,
            "unitsConsumed": units,
            "loadedAccountsDataSize": accounts_size if accounts_size is not None else 0,
            "returnData": return_data,
            "innerInstructions": None,
            "replacementBlockhash": None,
            "fee": None,
            "preBalances": None,
            "postBalances": None,
            "preTokenBalances": None,
            "postTokenBalances": None,
            "loadedAddresses": None,
        },
    )


# --- parameters -----------------------------------------------------------------------------


def param(params, index, default=None):
    if not isinstance(params, list):
        return default
    value = params[index] if len(params) > index else None
    return default if value is None else value


def config(params, index):
    value = param(params, index, {})
    if not isinstance(value, dict):
        raise invalid_params(f"Invalid params: expected a configuration object at {index}")
    return value


def commitment_of(cfg, default="finalized"):
    value = cfg.get("commitment") if isinstance(cfg, dict) else None
    if value is None:
        return default
    if value not in COMMITMENTS:
        raise invalid_params(
            f"Invalid params: unknown variant `{value}`, expected one of `processed`, "
            "`confirmed`, `finalized`"
        )
    return COMMITMENTS[value]


def at_least_confirmed(commitment):
    if commitment == "processed":
        raise invalid_params("Method does not support commitment below `confirmed`")


def pubkey_param(value):
    if not isinstance(value, str):
        raise invalid_params("Invalid params: expected a base-58 encoded pubkey string")
    try:
        return Pubkey.from_string(value)
    except ValueError as e:
        raise invalid_params("Invalid param: " + ("WrongSize" if "size" in str(e) else "Invalid"))


def signature_param(value):
    if not isinstance(value, str):
        raise invalid_params("Invalid params: expected a base-58 encoded signature string")
    try:
        return Signature.from_string(value)
    except ValueError as e:
        raise invalid_params("Invalid param: " + ("WrongSize" if "size" in str(e) else "Invalid"))


def decode_transaction(encoded, encoding):
    if not isinstance(encoded, str):
        raise invalid_params("Invalid params: expected an encoded transaction string")
    if encoding == "base58":
        if len(encoded) > 1683:
            raise invalid_params(
                f"base58 encoded solana_transaction::versioned::VersionedTransaction too large: "
                f"{len(encoded)} bytes (max: encoded/raw 1683/1232)"
            )
        try:
            raw = b58decode(encoded)
        except ValueError as e:
            raise invalid_params(f"invalid base58 encoding: {e}")
    elif encoding == "base64":
        if len(encoded) > 1644:
            raise invalid_params(
                f"base64 encoded solana_transaction::versioned::VersionedTransaction too large: "
                f"{len(encoded)} bytes (max: encoded/raw 1644/1232)"
            )
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as e:
            raise invalid_params(f"invalid base64 encoding: {e}")
    else:
        raise invalid_params(
            f"unsupported encoding: {encoding}. Supported encodings: base58, base64"
        )
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except Exception as e:  # solders raises its own error types
        raise invalid_params(
            f"failed to deserialize solana_transaction::versioned::VersionedTransaction: {e}"
        )
    try:
        tx.sanitize()
    except Exception:
        raise invalid_params(
            "invalid transaction: Transaction failed to sanitize accounts offsets correctly"
        )
    return raw, tx


# --- token accounts ---------------------------------------------------------------------------

TOKEN_ACCOUNT_LEN = 165
MINT_LEN = 82


def coption_pubkey(data, offset):
    if data[offset : offset + 4] == b"\x01\0\0\0":
        return Pubkey.from_bytes(data[offset + 4 : offset + 36])
    return None


def parse_token_account(account):
    """(mint, owner, amount, account) of an initialized SPL token account, else None."""
    if account is None or account.owner not in TOKEN_PROGRAMS:
        return None
    data = bytes(account.data)
    if len(data) < TOKEN_ACCOUNT_LEN:
        return None
    if len(data) > TOKEN_ACCOUNT_LEN and data[TOKEN_ACCOUNT_LEN] != 2:
        return None  # Token-2022 account type byte: 2 is an account, 1 a mint
    if data[108] == 0:
        return None  # uninitialized
    return (
        Pubkey.from_bytes(data[0:32]),
        Pubkey.from_bytes(data[32:64]),
        struct.unpack_from("<Q", data, 64)[0],
        data,
    )


def parse_mint(account):
    if account is None or account.owner not in TOKEN_PROGRAMS:
        return None
    data = bytes(account.data)
    if len(data) < MINT_LEN or data[45] == 0:
        return None
    extended = len(data) > TOKEN_ACCOUNT_LEN and data[TOKEN_ACCOUNT_LEN] == 1  # Token-2022
    if len(data) > MINT_LEN and not extended:
        return None
    return {
        "mintAuthority": coption_pubkey(data, 0),
        "supply": struct.unpack_from("<Q", data, 36)[0],
        "decimals": data[44],
        "freezeAuthority": coption_pubkey(data, 46),
    }


def parsed_token_account_json(account, decimals):
    mint, owner, amount, data = parse_token_account(account)
    state = {1: "initialized", 2: "frozen"}.get(data[108], "uninitialized")
    info = {
        "isNative": data[109:113] == b"\x01\0\0\0",
        "mint": str(mint),
        "owner": str(owner),
        "state": state,
        "tokenAmount": ui_token_amount(amount, decimals),
    }
    delegate = coption_pubkey(data, 72)
    if delegate is not None:
        info["delegate"] = str(delegate)
        info["delegatedAmount"] = ui_token_amount(struct.unpack_from("<Q", data, 121)[0], decimals)
    if info["isNative"]:
        info["rentExemptReserve"] = ui_token_amount(struct.unpack_from("<Q", data, 113)[0], 9)
    close = coption_pubkey(data, 129)
    if close is not None:
        info["closeAuthority"] = str(close)
    return {"type": "account", "info": info}


def parsed_mint_json(mint):
    return {
        "type": "mint",
        "info": {
            "decimals": mint["decimals"],
            "freezeAuthority": str(mint["freezeAuthority"]) if mint["freezeAuthority"] else None,
            "isInitialized": True,
            "mintAuthority": str(mint["mintAuthority"]) if mint["mintAuthority"] else None,
            "supply": str(mint["supply"]),
        },
    }


# --- instructions for fixtures ---------------------------------------------------------------


def ata_of(owner, mint, program=TOKEN_PROGRAM):
    return get_associated_token_address(owner, mint, program)


def ix_init_mint(mint, decimals, authority, freeze_authority, program):
    data = bytes([20, decimals]) + bytes(authority)
    data += b"\x01" + bytes(freeze_authority) if freeze_authority else b"\x00"
    return Instruction(program, data, [AccountMeta(mint, False, True)])


def ix_create_ata(payer, owner, mint, program):
    return Instruction(
        ATA_PROGRAM,
        b"\x01",  # CreateIdempotent
        [
            AccountMeta(payer, True, True),
            AccountMeta(ata_of(owner, mint, program), False, True),
            AccountMeta(owner, False, False),
            AccountMeta(mint, False, False),
            AccountMeta(SYSTEM_PROGRAM, False, False),
            AccountMeta(program, False, False),
        ],
    )


def ix_mint_to(mint, account, authority, amount, program):
    return Instruction(
        program,
        bytes([7]) + struct.pack("<Q", amount),
        [
            AccountMeta(mint, False, True),
            AccountMeta(account, False, True),
            AccountMeta(authority, True, False),
        ],
    )


def ix_freeze(account, mint, authority, program):
    return Instruction(
        program,
        bytes([10]),  # FreezeAccount
        [
            AccountMeta(account, False, True),
            AccountMeta(mint, False, False),
            AccountMeta(authority, True, False),
        ],
    )


def ix_transfer_checked(source, mint, dest, owner, amount, decimals, program, references=()):
    metas = [
        AccountMeta(source, False, True),
        AccountMeta(mint, False, False),
        AccountMeta(dest, False, True),
        AccountMeta(owner, True, False),
    ]
    # Solana Pay: references ride along as read-only, non-signer keys of the transfer.
    metas += [AccountMeta(r, False, False) for r in references]
    return Instruction(program, bytes([12]) + struct.pack("<QB", amount, decimals), metas)


def ix_memo(text):
    return Instruction(MEMO_PROGRAM, text.encode("utf-8"), [])


# --- jsonParsed instructions --------------------------------------------------------------------


def parse_instruction(program, accounts, data):
    """(program name, parsed) for the instructions jsonParsed decodes, else None."""
    try:
        if program in MEMO_PROGRAMS:
            return "spl-memo", data.decode("utf-8")
        if program == SYSTEM_PROGRAM and len(data) >= 12 and data[:4] == b"\x02\0\0\0":
            return "system", {
                "type": "transfer",
                "info": {
                    "source": accounts[0],
                    "destination": accounts[1],
                    "lamports": struct.unpack_from("<Q", data, 4)[0],
                },
            }
        if program in TOKEN_PROGRAMS and data:
            name = TOKEN_PROGRAMS[program]
            tag = data[0]
            if tag == 3:
                return name, {
                    "type": "transfer",
                    "info": {
                        "source": accounts[0],
                        "destination": accounts[1],
                        "authority": accounts[2],
                        "amount": str(struct.unpack_from("<Q", data, 1)[0]),
                    },
                }
            if tag == 12:
                amount, decimals = struct.unpack_from("<QB", data, 1)
                return name, {
                    "type": "transferChecked",
                    "info": {
                        "source": accounts[0],
                        "mint": accounts[1],
                        "destination": accounts[2],
                        "authority": accounts[3],
                        "tokenAmount": ui_token_amount(amount, decimals),
                    },
                }
            if tag == 7:
                return name, {
                    "type": "mintTo",
                    "info": {
                        "mint": accounts[0],
                        "account": accounts[1],
                        "mintAuthority": accounts[2],
                        "amount": str(struct.unpack_from("<Q", data, 1)[0]),
                    },
                }
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


# --- the ledger -------------------------------------------------------------------------------


class TxRecord:
    """A landed (or, while `ghost_until` is set, a to-be-dropped) transaction, with its answers
    rendered once: the record never changes, so neither do they."""

    __slots__ = (
        "signature", "seq", "slot", "block_time", "raw", "version", "keys", "err",
        "memo", "message_json", "meta_json", "parsed_json", "ghost_until", "cache",
    )

    def __init__(self, **kwargs):
        self.ghost_until = None
        self.cache = {}
        for name, value in kwargs.items():
            setattr(self, name, value)

    def status_json(self):
        if self.err is None:
            return {"Ok": None}
        return {"Err": self.err}

    def result_json(self, encoding, with_version):
        """The getTransaction result, rendered once per encoding."""
        key = (encoding, with_version)
        text = self.cache.get(key)
        if text is not None:
            return text
        if encoding == "base64":
            transaction = [base64.b64encode(self.raw).decode(), "base64"]
        elif encoding == "base58":
            transaction = [b58encode(self.raw), "base58"]
        elif encoding == "jsonParsed":
            transaction = self.parsed_json["transaction"]
        else:
            transaction = self.message_json
        meta = self.meta_json
        if encoding == "jsonParsed":
            meta = dict(meta, innerInstructions=self.parsed_json["innerInstructions"])
        result = {"slot": self.slot, "transaction": transaction, "meta": meta}
        if with_version:
            result["version"] = self.version
        result["blockTime"] = self.block_time
        text = json.dumps(result, separators=(",", ":"))
        self.cache[key] = text
        return text


class Chain:
    """LiteSVM, a slot clock and the ledger an RPC node keeps beside its bank."""

    def __init__(self, slot_ms=50):
        self.lock = threading.RLock()
        self.svm = (
            LiteSVM()
            .with_blockhash_check(False)  # blockhash age is kept here, per slot
            .with_transaction_history(0)  # duplicates are refused here, per commitment
            .with_sigverify(True)
            .with_lamports(FAUCET_LAMPORTS * 2)
        )
        self.seed = os.urandom(16)
        self.genesis_hash = self.hash_for(-1)
        self.slot = FIRST_SLOT
        self.blockhash_slots = {}
        for s in range(FIRST_SLOT - MAX_PROCESSING_AGE - 1, FIRST_SLOT + 1):
            self.blockhash_slots[str(self.hash_for(s))] = s
        self.slot_ms = slot_ms
        self.paused = False
        self.seq = 0
        self.tx_count = 0
        self.records = {}  # signature -> TxRecord
        self.by_address = collections.defaultdict(list)  # pubkey -> [TxRecord], oldest first
        self.ghosts = []
        self.drop_next = 0
        self.drop_signatures = {}  # signature -> slots a dropped transaction stays visible
        self.drop_after = DEFAULT_DROP_AFTER
        self.versions = {}  # pubkey -> [(slot, Account | None)] while not finalized
        self.dirty = collections.deque()  # (slot, pubkey) to compact once finalized
        self.program_lamports = {}
        self.decimals = {}
        self.keypairs = {}
        self.faucet = Keypair()
        funded = self.svm.airdrop(self.faucet.pubkey(), FAUCET_LAMPORTS)
        if isinstance(funded, FailedTransactionMetadata):
            raise RuntimeError("LiteSVM refused to fund the faucet")
        self.keypairs[str(self.faucet.pubkey())] = self.faucet
        self.mint_authority = Keypair()
        self.keypairs[str(self.mint_authority.pubkey())] = self.mint_authority
        self._sync_clock()
        self.ticker = threading.Thread(target=self._tick, daemon=True, name="slot-clock")
        self.ticker.start()

    # - slots -

    def hash_for(self, slot):
        return Hash(hashlib.sha256(self.seed + slot.to_bytes(8, "little", signed=True)).digest())

    def bound(self, commitment):
        """The newest slot a commitment has reached."""
        if commitment == "processed":
            return self.slot
        if commitment == "confirmed":
            return self.slot - CONFIRMATION_LAG
        return self.slot - CONFIRMATION_LAG - FINALIZATION_LAG

    def status_of(self, slot):
        if slot <= self.bound("finalized"):
            return "finalized"
        if slot <= self.bound("confirmed"):
            return "confirmed"
        return "processed"

    def blockhash_valid(self, blockhash, at_slot):
        slot = self.blockhash_slots.get(blockhash)
        return slot is not None and slot <= at_slot and at_slot - slot <= MAX_PROCESSING_AGE

    def _tick(self):
        while True:
            time.sleep(self.slot_ms / 1000.0)
            if not self.paused:
                self.advance(1)

    def advance(self, slots):
        with self.lock:
            for _ in range(slots):
                self.slot += 1
                self.blockhash_slots[str(self.hash_for(self.slot))] = self.slot
            old = self.slot - MAX_PROCESSING_AGE - FINALIZATION_LAG - 100
            if len(self.blockhash_slots) > 4 * (MAX_PROCESSING_AGE + FINALIZATION_LAG + 100):
                self.blockhash_slots = {h: s for h, s in self.blockhash_slots.items() if s >= old}
            self._drop_ghosts()
            self._compact_versions()
            return self.slot

    def _sync_clock(self):
        clock = self.svm.get_clock()
        if clock.slot != self.slot:
            clock.slot = self.slot
            clock.epoch = self.slot // SLOTS_PER_EPOCH
            clock.unix_timestamp = int(time.time())
            self.svm.set_clock(clock)

    # - accounts by commitment -

    def account_at(self, pubkey, commitment):
        """An account as the bank at `commitment` sees it.

        LiteSVM holds the newest (processed) state only. Every write a transaction makes is
        also recorded here as (slot, account) until its slot is finalized, so an older bank's
        view is the newest recorded version at or before that bank's slot."""
        if commitment != "processed":
            versions = self.versions.get(pubkey)
            if versions:
                limit = self.bound(commitment)
                for slot, account in reversed(versions):
                    if slot <= limit:
                        return account
                return versions[0][1]
        return self.svm.get_account(pubkey)

    def _compact_versions(self):
        finalized = self.bound("finalized")
        while self.dirty and self.dirty[0][0] <= finalized:
            _, key = self.dirty.popleft()
            versions = self.versions.get(key)
            if not versions:
                continue
            keep = 0
            for i, (slot, _) in enumerate(versions):
                if slot <= finalized:
                    keep = i
            versions = versions[keep:]
            if len(versions) == 1:
                del self.versions[key]  # LiteSVM's state is this one
            else:
                self.versions[key] = versions

    def _get(self, pubkey):
        lamports = self.program_lamports.get(pubkey)
        if lamports is not None:
            return lamports  # programs: their ELF is not copied out for every transaction
        account = self.svm.get_account(pubkey)
        if account is not None and account.executable:
            self.program_lamports[pubkey] = account.lamports
            return account.lamports
        return account

    def mint_decimals(self, mint):
        decimals = self.decimals.get(mint)
        if decimals is None:
            parsed = parse_mint(self.svm.get_account(mint))
            if parsed is None:
                return None
            decimals = self.decimals[mint] = parsed["decimals"]
        return decimals

    # - transactions -

    def resolve_keys(self, message):
        """All account keys of a message (static, then loaded writable, then loaded read-only),
        the number of static ones, and the loaded addresses."""
        keys = list(message.account_keys)
        writable, readonly = [], []
        if isinstance(message, MessageV0):
            for lookup in message.address_table_lookups:
                table = self.svm.get_account(lookup.account_key)
                if table is None or table.owner != ALT_PROGRAM:
                    return None
                data = bytes(table.data)
                addresses = [
                    Pubkey.from_bytes(data[i : i + 32]) for i in range(56, len(data) - 31, 32)
                ]
                try:
                    writable += [addresses[i] for i in lookup.writable_indexes]
                    readonly += [addresses[i] for i in lookup.readonly_indexes]
                except IndexError:
                    return None
        return keys + writable + readonly, len(keys), (writable, readonly)

    @staticmethod
    def writable_indexes(message, n_static, n_loaded_writable):
        header = message.header
        signed = header.num_required_signatures
        writable = set(range(signed - header.num_readonly_signed_accounts))
        writable |= set(range(signed, n_static - header.num_readonly_unsigned_accounts))
        writable |= set(range(n_static, n_static + n_loaded_writable))
        return writable

    def submit(self, raw, tx, skip_preflight, preflight_commitment, min_context_slot=None):
        """sendTransaction: what the node checks before forwarding, then what the leader does."""
        signature = str(tx.signatures[0])
        with self.lock:
            blockhash = str(tx.message.recent_blockhash)
            existing = self.records.get(signature)
            if not skip_preflight:
                bank = self.bound(preflight_commitment)
                if min_context_slot is not None and bank < min_context_slot:
                    raise RpcError(
                        -32016, "Minimum context slot has not been reached", {"contextSlot": bank}
                    )
                if not all(tx.verify_with_results()):
                    raise RpcError(-32003, "Transaction signature verification failure")
                if existing is not None and existing.slot <= bank:
                    raise preflight_failure("AlreadyProcessed")
                if not self.blockhash_valid(blockhash, bank):
                    raise preflight_failure("BlockhashNotFound")
                if existing is None:
                    self._preflight(tx)
            if existing is not None:
                return signature  # the leader drops the duplicate
            if skip_preflight and not all(tx.verify_with_results()):
                return signature  # dropped before execution
            if not self.blockhash_valid(blockhash, self.slot):
                return signature  # expired by the time it reaches the leader: dropped
            ghost = self.drop_signatures.pop(signature, None)
            if ghost is None and self.drop_next > 0:
                self.drop_next -= 1
                ghost = self.drop_after
            self.land(raw, tx, ghost_slots=ghost)
            return signature

    def _preflight(self, tx):
        self._sync_clock()
        result = self.svm.simulate_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            raise preflight_failure(
                transaction_error_json(result.err()),
                logs=list(meta.logs()),
                units=meta.compute_units_consumed(),
                return_data=self._return_data(meta),
            )

    def land(self, raw, tx, ghost_slots=None):
        """Executes a transaction in the current slot and records it; None when it could not
        land (its fee payer could not pay, or its accounts could not be loaded)."""
        resolved = self.resolve_keys(tx.message)
        if resolved is None:
            return None
        keys, n_static, loaded = resolved
        self._sync_clock()
        pre = {k: self._get(k) for k in keys}
        payer = keys[0]
        if ghost_slots is None:
            result = self.svm.send_transaction(tx)
            failed = isinstance(result, FailedTransactionMetadata)
            post = {k: self._get(k) for k in keys}
        else:
            result = self.svm.simulate_transaction(tx)
            failed = isinstance(result, FailedTransactionMetadata)
            post = dict(pre)
            if failed:
                meta = result.meta()
                account = pre.get(payer)
                if isinstance(account, Account) and account.lamports >= meta.fee():
                    post[payer] = Account(
                        account.lamports - meta.fee(), account.data, account.owner,
                        account.executable, account.rent_epoch,
                    )
            else:
                post.update(dict(result.post_accounts()))
        # Failures and simulations carry their metadata inside; a landed success is it.
        meta = result if ghost_slots is None and not failed else result.meta()
        if failed:
            before, after = self._lamports(pre.get(payer)), self._lamports(post.get(payer))
            if after >= before:
                return None  # never paid its fee: it did not land
        err = transaction_error_json(result.err()) if failed else None
        slot = self.slot
        writable = self.writable_indexes(tx.message, n_static, len(loaded[0]))
        if ghost_slots is None:
            self._record_versions(keys, writable, pre, post, slot)
        record = self._record(raw, tx, keys, n_static, loaded, pre, post, meta, err, slot)
        if ghost_slots is not None:
            record.ghost_until = slot + max(1, min(int(ghost_slots), FINALIZATION_LAG))
            self.ghosts.append(record)
        self._index(record)
        return record

    @staticmethod
    def _lamports(account):
        if account is None:
            return 0
        return account if isinstance(account, int) else account.lamports

    def _record_versions(self, keys, writable, pre, post, slot):
        for i in writable:
            key = keys[i]
            if isinstance(post.get(key), int):
                continue
            versions = self.versions.get(key)
            if versions is None:
                versions = self.versions[key] = [(-1, pre.get(key))]
            versions.append((slot, post.get(key)))
            self.dirty.append((slot, key))

    @staticmethod
    def _return_data(meta):
        data = meta.return_data()
        if data is None or not bytes(data.data):
            return None
        return {
            "programId": str(data.program_id),
            "data": [base64.b64encode(bytes(data.data)).decode(), "base64"],
        }

    def _token_balances(self, keys, accounts):
        out = []
        for i, key in enumerate(keys):
            account = accounts.get(key)
            if not isinstance(account, Account):
                continue
            parsed = parse_token_account(account)
            if parsed is None:
                continue
            mint, owner, amount, _ = parsed
            decimals = self.mint_decimals(mint)
            if decimals is None:
                continue
            out.append({
                "accountIndex": i,
                "mint": str(mint),
                "uiTokenAmount": ui_token_amount(amount, decimals),
                "owner": str(owner),
                "programId": str(account.owner),
            })
        return out

    def _record(self, raw, tx, keys, n_static, loaded, pre, post, meta, err, slot):
        message = tx.message
        key_strs = [str(k) for k in keys]
        instructions = []
        parsed_instructions = []
        memos = []
        for ix in message.instructions:
            accounts = list(ix.accounts)
            data = bytes(ix.data)
            instructions.append({
                "programIdIndex": ix.program_id_index,
                "accounts": accounts,
                "data": b58encode(data),
                "stackHeight": None,
            })
            program = keys[ix.program_id_index]
            parsed_instructions.append(
                self._parsed_instruction(program, [key_strs[a] for a in accounts], data, None)
            )
            if program in MEMO_PROGRAMS:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = "(unparseable)"
                memos.append(f"[{len(data)}] {text}")
        inner = []
        parsed_inner = []
        for index, group in enumerate(meta.inner_instructions()):
            if not group:
                continue
            rendered, parsed = [], []
            for item in group:
                ix = item.instruction()
                stack_height = item.stack_height()
                accounts = list(ix.accounts)
                data = bytes(ix.data)
                rendered.append({
                    "programIdIndex": ix.program_id_index,
                    "accounts": accounts,
                    "data": b58encode(data),
                    "stackHeight": stack_height,
                })
                parsed.append(self._parsed_instruction(
                    keys[ix.program_id_index], [key_strs[a] for a in accounts], data, stack_height,
                ))
            inner.append({"index": index, "instructions": rendered})
            parsed_inner.append({"index": index, "instructions": parsed})
        header = message.header
        message_json = {
            "header": {
                "numRequiredSignatures": header.num_required_signatures,
                "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
            },
            "accountKeys": key_strs[:n_static],
            "recentBlockhash": str(message.recent_blockhash),
            "instructions": instructions,
        }
        writable = self.writable_indexes(message, n_static, len(loaded[0]))
        signed = header.num_required_signatures
        parsed_keys = [
            {
                "pubkey": key_strs[i],
                "writable": i in writable,
                "signer": i < signed,
                "source": "transaction" if i < n_static else "lookupTable",
            }
            for i in range(len(keys))
        ]
        parsed_message = {
            "accountKeys": parsed_keys,
            "recentBlockhash": str(message.recent_blockhash),
            "instructions": parsed_instructions,
        }
        version = "legacy"
        if isinstance(message, MessageV0):
            version = 0
            lookups = [
                {
                    "accountKey": str(l.account_key),
                    "writableIndexes": list(l.writable_indexes),
                    "readonlyIndexes": list(l.readonly_indexes),
                }
                for l in message.address_table_lookups
            ]
            message_json["addressTableLookups"] = lookups
            parsed_message["addressTableLookups"] = lookups
        signatures = [str(s) for s in tx.signatures]
        meta_json = {
            "err": err,
            "status": {"Ok": None} if err is None else {"Err": err},
            "fee": meta.fee(),
            "preBalances": [self._lamports(pre.get(k)) for k in keys],
            "postBalances": [self._lamports(post.get(k)) for k in keys],
            "innerInstructions": inner,
            "logMessages": list(meta.logs()),
            "preTokenBalances": self._token_balances(keys, pre),
            "postTokenBalances": self._token_balances(keys, post),
            "rewards": [],
            "loadedAddresses": {
                "writable": [str(k) for k in loaded[0]],
                "readonly": [str(k) for k in loaded[1]],
            },
        }
        return_data = self._return_data(meta)
        if return_data is not None:
            meta_json["returnData"] = return_data
        meta_json["computeUnitsConsumed"] = meta.compute_units_consumed()
        self.seq += 1
        return TxRecord(
            signature=signatures[0],
            seq=self.seq,
            slot=slot,
            block_time=int(time.time()),
            raw=raw,
            version=version,
            keys=list(dict.fromkeys(keys)),
            err=err,
            memo="; ".join(memos) if memos else None,
            message_json={"signatures": signatures, "message": message_json},
            meta_json=meta_json,
            parsed_json={
                "transaction": {"signatures": signatures, "message": parsed_message},
                "innerInstructions": parsed_inner,
            },
        )

    def _parsed_instruction(self, program, accounts, data, stack_height):
        parsed = parse_instruction(program, accounts, data)
        if parsed is None:
            return {
                "programId": str(program),
                "accounts": accounts,
                "data": b58encode(data),
                "stackHeight": stack_height,
            }
        name, value = parsed
        return {
            "program": name,
            "programId": str(program),
            "parsed": value,
            "stackHeight": stack_height,
        }

    def _index(self, record):
        self.records[record.signature] = record
        self.tx_count += 1
        for key in record.keys:
            self.by_address[key].append(record)

    def _drop_ghosts(self):
        if not self.ghosts:
            return
        keep = []
        for record in self.ghosts:
            if record.ghost_until > self.slot:
                keep.append(record)
                continue
            # The fork it landed on was abandoned: it never happened.
            if self.records.get(record.signature) is record:
                del self.records[record.signature]
                self.tx_count -= 1
            for key in record.keys:
                entries = self.by_address.get(key)
                if entries and record in entries:
                    entries.remove(record)
        self.ghosts = keep

    # - reads -

    def visible(self, record, commitment):
        return record.slot <= self.bound(commitment)

    def signatures_for_address(self, address, before, until, limit, commitment):
        limit_slot = self.bound(commitment)
        entries = self.by_address.get(address, [])
        end = len(entries)
        if before is not None:
            record = self.records.get(before)
            if record is None:
                return []
            end = bisect.bisect_left(entries, record.seq, key=lambda r: r.seq)
        until_seq = None
        if until is not None:
            record = self.records.get(until)
            if record is not None:
                until_seq = record.seq
        out = []
        for i in range(end - 1, -1, -1):
            record = entries[i]
            if until_seq is not None and record.seq <= until_seq:
                break
            if record.slot > limit_slot:
                continue
            out.append({
                "signature": record.signature,
                "slot": record.slot,
                "err": record.err,
                "memo": record.memo,
                "blockTime": record.block_time,
                "confirmationStatus": self.status_of(record.slot),
            })
            if len(out) >= limit:
                break
        return out

    def signature_status(self, signature, search_history):
        record = self.records.get(signature)
        if record is None:
            return None
        if not search_history and self.slot - record.slot > STATUS_CACHE_SLOTS:
            return None
        status = self.status_of(record.slot)
        return {
            "slot": record.slot,
            "confirmations": None if status == "finalized" else self.slot - record.slot,
            "status": record.status_json(),
            "err": record.err,
            "confirmationStatus": status,
        }


# --- JSON-RPC ---------------------------------------------------------------------------------


def context(slot):
    return {"slot": slot, "apiVersion": API_VERSION}


def with_context(slot, value):
    return {"context": context(slot), "value": value}


class Rpc:
    """The JSON-RPC methods, by name."""

    def __init__(self, chain):
        self.chain = chain
        self.methods = {
            name[len("m_"):]: getattr(self, name) for name in dir(self) if name.startswith("m_")
        }

    def call(self, method, params):
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(-32601, "Method not found")
        if params is not None and not isinstance(params, (list, dict)):
            raise RpcError(-32602, "Invalid params")
        return handler(params if params is not None else [])

    def bank(self, cfg, commitment=None):
        """The slot a read serves from, honoring `minContextSlot`."""
        slot = self.chain.bound(commitment or commitment_of(cfg))
        minimum = cfg.get("minContextSlot") if isinstance(cfg, dict) else None
        if minimum is not None and slot < minimum:
            raise RpcError(
                -32016, "Minimum context slot has not been reached", {"contextSlot": slot}
            )
        return slot

    # - cluster -

    def m_getHealth(self, params):
        return "ok"

    def m_getVersion(self, params):
        return {"solana-core": API_VERSION, "feature-set": FEATURE_SET}

    def m_getGenesisHash(self, params):
        return str(self.chain.genesis_hash)

    def m_getSlot(self, params):
        with self.chain.lock:
            return self.bank(config(params, 0))

    def m_getBlockHeight(self, params):
        with self.chain.lock:
            return self.bank(config(params, 0))

    def m_getEpochInfo(self, params):
        with self.chain.lock:
            slot = self.bank(config(params, 0))
            return {
                "absoluteSlot": slot,
                "blockHeight": slot,
                "epoch": slot // SLOTS_PER_EPOCH,
                "slotIndex": slot % SLOTS_PER_EPOCH,
                "slotsInEpoch": SLOTS_PER_EPOCH,
                "transactionCount": self.chain.tx_count,
            }

    def m_getLatestBlockhash(self, params):
        with self.chain.lock:
            slot = self.bank(config(params, 0))
            return with_context(slot, {
                "blockhash": str(self.chain.hash_for(slot)),
                "lastValidBlockHeight": slot + MAX_PROCESSING_AGE,
            })

    def m_isBlockhashValid(self, params):
        blockhash = param(params, 0)
        if not isinstance(blockhash, str):
            raise invalid_params("Invalid params: expected a blockhash string")
        try:
            Hash.from_string(blockhash)
        except ValueError:
            raise invalid_params("Invalid param: Invalid")
        with self.chain.lock:
            slot = self.bank(config(params, 1))
            return with_context(slot, self.chain.blockhash_valid(blockhash, slot))

    def m_getFeeForMessage(self, params):
        encoded = param(params, 0)
        try:
            message = from_bytes_versioned(base64.b64decode(encoded, validate=True))
        except Exception:
            raise invalid_params("invalid message: failed to deserialize")
        with self.chain.lock:
            slot = self.bank(config(params, 1))
            if not self.chain.blockhash_valid(str(message.recent_blockhash), slot):
                return with_context(slot, None)
            fee = LAMPORTS_PER_SIGNATURE * message.header.num_required_signatures
            return with_context(slot, fee)

    def m_getMinimumBalanceForRentExemption(self, params):
        size = param(params, 0, 0)
        if not isinstance(size, int) or size < 0:
            raise invalid_params("Invalid params: expected a data length")
        with self.chain.lock:
            return self.chain.svm.minimum_balance_for_rent_exemption(size)

    def m_getRecentPrioritizationFees(self, params):
        with self.chain.lock:
            slot = self.chain.slot
        return [{"slot": s, "prioritizationFee": 0} for s in range(slot - 149, slot + 1)]

    # - accounts -

    def m_getBalance(self, params):
        key = pubkey_param(param(params, 0))
        cfg = config(params, 1)
        with self.chain.lock:
            slot = self.bank(cfg)
            account = self.chain.account_at(key, commitment_of(cfg))
            return with_context(slot, account.lamports if account else 0)

    def encode_account(self, key, account, cfg):
        if account is None:
            return None
        encoding = cfg.get("encoding") or "binary"
        data = bytes(account.data)
        data_slice = cfg.get("dataSlice")
        if isinstance(data_slice, dict) and encoding != "jsonParsed":
            offset = int(data_slice.get("offset", 0))
            data = data[offset : offset + int(data_slice.get("length", 0))]
        ui = None
        if encoding == "jsonParsed":
            ui = self.parsed_account(account)
            if ui is None:
                ui = [base64.b64encode(data).decode(), "base64"]
        elif encoding == "base64":
            ui = [base64.b64encode(data).decode(), "base64"]
        elif encoding == "base64+zstd":
            ui = [base64.b64encode(zstd_frame(data)).decode(), "base64+zstd"]
        elif encoding == "base58":
            ui = [b58encode(data), "base58"]
        elif encoding == "binary":
            ui = b58encode(data)
        else:
            raise invalid_params(f"Invalid params: unknown encoding `{encoding}`")
        return {
            "lamports": account.lamports,
            "data": ui,
            "owner": str(account.owner),
            "executable": account.executable,
            "rentEpoch": account.rent_epoch,
            "space": len(account.data),
        }

    def parsed_account(self, account):
        program = TOKEN_PROGRAMS.get(account.owner)
        if program is None:
            return None
        if parse_token_account(account) is not None:
            mint = Pubkey.from_bytes(bytes(account.data)[0:32])
            decimals = self.chain.mint_decimals(mint)
            if decimals is None:
                return None
            parsed = parsed_token_account_json(account, decimals)
        else:
            mint = parse_mint(account)
            if mint is None:
                return None
            parsed = parsed_mint_json(mint)
        return {"program": program, "parsed": parsed, "space": len(account.data)}

    def m_getAccountInfo(self, params):
        key = pubkey_param(param(params, 0))
        cfg = config(params, 1)
        with self.chain.lock:
            slot = self.bank(cfg)
            account = self.chain.account_at(key, commitment_of(cfg))
            return with_context(slot, self.encode_account(key, account, cfg))

    def m_getMultipleAccounts(self, params):
        keys = param(params, 0, [])
        if not isinstance(keys, list):
            raise invalid_params("Invalid params: expected a list of pubkeys")
        if len(keys) > 100:
            raise invalid_params("Too many inputs provided; max 100")
        keys = [pubkey_param(k) for k in keys]
        cfg = config(params, 1)
        with self.chain.lock:
            slot = self.bank(cfg)
            commitment = commitment_of(cfg)
            return with_context(slot, [
                self.encode_account(k, self.chain.account_at(k, commitment), cfg) for k in keys
            ])

    def m_getTokenAccountBalance(self, params):
        key = pubkey_param(param(params, 0))
        cfg = config(params, 1)
        with self.chain.lock:
            slot = self.bank(cfg)
            account = self.chain.account_at(key, commitment_of(cfg))
            if account is None:
                raise invalid_params("Invalid param: could not find account")
            parsed = parse_token_account(account)
            if parsed is None:
                raise invalid_params("Invalid param: not a Token account")
            decimals = self.chain.mint_decimals(parsed[0])
            if decimals is None:
                raise invalid_params("Invalid param: could not find mint")
            return with_context(slot, ui_token_amount(parsed[2], decimals))

    def m_getTokenAccountsByOwner(self, params):
        owner = pubkey_param(param(params, 0))
        selector = config(params, 1)
        cfg = config(params, 2)
        if "mint" in selector:
            mint = pubkey_param(selector["mint"])
            programs = list(TOKEN_PROGRAMS)
        elif "programId" in selector:
            mint = None
            program = pubkey_param(selector["programId"])
            if program not in TOKEN_PROGRAMS:
                raise invalid_params("Invalid param: unrecognized Token program id")
            programs = [program]
        else:
            raise invalid_params("Invalid params: expected `mint` or `programId`")
        with self.chain.lock:
            slot = self.bank(cfg)
            commitment = commitment_of(cfg)
            out = []
            for program in programs:
                for key, _ in self.chain.svm.get_program_accounts(program):
                    account = self.chain.account_at(key, commitment)
                    parsed = parse_token_account(account)
                    if parsed is None or parsed[1] != owner or (mint and parsed[0] != mint):
                        continue
                    out.append({
                        "pubkey": str(key), "account": self.encode_account(key, account, cfg)
                    })
            return with_context(slot, out)

    # - transactions -

    def m_sendTransaction(self, params):
        cfg = config(params, 1)
        encoding = cfg.get("encoding") or "base58"
        raw, tx = decode_transaction(param(params, 0), encoding)
        preflight = COMMITMENTS.get(cfg.get("preflightCommitment") or "finalized", "finalized")
        return self.chain.submit(
            raw, tx, bool(cfg.get("skipPreflight")), preflight, cfg.get("minContextSlot")
        )

    def m_simulateTransaction(self, params):
        cfg = config(params, 1)
        raw, tx = decode_transaction(param(params, 0), cfg.get("encoding") or "base58")
        chain = self.chain
        with chain.lock:
            slot = self.bank(cfg)
            replacement = None
            if cfg.get("replaceRecentBlockhash"):
                replacement = {
                    "blockhash": str(chain.hash_for(slot)),
                    "lastValidBlockHeight": slot + MAX_PROCESSING_AGE,
                }
            elif cfg.get("sigVerify") and not all(tx.verify_with_results()):
                raise RpcError(-32003, "Transaction signature verification failure")
            value = {
                "err": None, "logs": [], "accounts": None, "unitsConsumed": 0,
                "loadedAccountsDataSize": 0, "returnData": None, "innerInstructions": None,
                "replacementBlockhash": replacement, "fee": None, "preBalances": None,
                "postBalances": None, "preTokenBalances": None, "postTokenBalances": None,
                "loadedAddresses": None,
            }
            if replacement is None and not chain.blockhash_valid(
                str(tx.message.recent_blockhash), slot
            ):
                value["err"] = "BlockhashNotFound"
                return with_context(slot, value)
            chain._sync_clock()
            result = chain.svm.simulate_transaction(tx)
            failed = isinstance(result, FailedTransactionMetadata)
            meta = result.meta()
            value.update(
                err=transaction_error_json(result.err()) if failed else None,
                logs=list(meta.logs()),
                unitsConsumed=meta.compute_units_consumed(),
                returnData=chain._return_data(meta),
                fee=meta.fee(),
            )
            return with_context(slot, value)

    def m_requestAirdrop(self, params):
        key = pubkey_param(param(params, 0))
        lamports = param(params, 1)
        if not isinstance(lamports, int) or lamports <= 0:
            raise invalid_params("Invalid params: expected lamports")
        with self.chain.lock:
            record = fixtures_land(
                self.chain,
                [transfer(TransferParams(
                    from_pubkey=self.chain.faucet.pubkey(), to_pubkey=key, lamports=lamports
                ))],
                [self.chain.faucet],
            )
            if record is None or record.err is not None:
                raise RpcError(-32603, "Internal error: airdrop failed")
            return record.signature

    def m_getSignatureStatuses(self, params):
        signatures = param(params, 0, [])
        if not isinstance(signatures, list):
            raise invalid_params("Invalid params: expected a list of signatures")
        if len(signatures) > MAX_SIGNATURE_STATUSES:
            raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
        signatures = [str(signature_param(s)) for s in signatures]
        history = bool(config(params, 1).get("searchTransactionHistory"))
        with self.chain.lock:
            return with_context(
                self.chain.slot,
                [self.chain.signature_status(s, history) for s in signatures],
            )

    def m_getSignaturesForAddress(self, params):
        address = pubkey_param(param(params, 0))
        cfg = config(params, 1)
        before = cfg.get("before")
        until = cfg.get("until")
        before = str(signature_param(before)) if before is not None else None
        until = str(signature_param(until)) if until is not None else None
        limit = cfg.get("limit")
        limit = MAX_SIGNATURES_FOR_ADDRESS if limit is None else limit
        if not isinstance(limit, int) or limit <= 0 or limit > MAX_SIGNATURES_FOR_ADDRESS:
            raise invalid_params(f"Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}")
        commitment = commitment_of(cfg)
        at_least_confirmed(commitment)
        with self.chain.lock:
            self.bank(cfg)
            return self.chain.signatures_for_address(address, before, until, limit, commitment)

    def m_getTransaction(self, params):
        signature = str(signature_param(param(params, 0)))
        cfg = param(params, 1, {})
        if isinstance(cfg, str):
            cfg = {"encoding": cfg}
        if not isinstance(cfg, dict):
            raise invalid_params("Invalid params: expected a configuration object")
        encoding = cfg.get("encoding") or "json"
        if encoding not in ("json", "jsonParsed", "base64", "base58", "binary"):
            raise invalid_params(f"Invalid params: unknown encoding `{encoding}`")
        if encoding == "binary":
            encoding = "base58"
        commitment = commitment_of(cfg)
        at_least_confirmed(commitment)
        max_version = cfg.get("maxSupportedTransactionVersion")
        with self.chain.lock:
            record = self.chain.records.get(signature)
            if record is None or not self.chain.visible(record, commitment):
                return None
        if record.version == 0 and (max_version is None or max_version < 0):
            raise RpcError(
                -32015,
                "Transaction version (0) is not supported by the requesting client. Please try "
                "the request again with the following configuration parameter: "
                '"maxSupportedTransactionVersion": 0',
            )
        return RawJson(record.result_json(encoding, max_version is not None))


class RawJson(str):
    """An answer already rendered as JSON text."""


def fixtures_land(chain, instructions, signers, payer=None):
    """Builds, signs and lands a legacy transaction at the current slot (no preflight)."""
    payer = payer or signers[0]
    blockhash = chain.hash_for(chain.slot)
    tx = Transaction(signers, Message(instructions, payer.pubkey()), blockhash)
    vtx = VersionedTransaction.from_legacy(tx)
    return chain.land(bytes(tx), vtx)


# --- test controls ----------------------------------------------------------------------------


class ControlError(Exception):
    pass


class Faults:
    """Failures armed by tests: each applies to the next `count` calls (of `method`, and whose
    request text contains `match`, if given), in the order armed. `match` (an address or a
    signature of a test's own) keeps tests that share the peer from taking each other's."""

    KINDS = ("timeout", "http_429", "http_503", "unhealthy")

    def __init__(self):
        self.lock = threading.Lock()
        self.armed = []

    def arm(self, body):
        kind = body.get("kind")
        if kind not in self.KINDS:
            raise ControlError(f"kind must be one of {', '.join(self.KINDS)}")
        fault = {
            "kind": kind,
            "count": int(body.get("count", 1)),
            "method": body.get("method"),
            "seconds": float(body.get("seconds", 5)),
            "retry_after": body.get("retry_after", 1),
            "slots_behind": body.get("slots_behind"),
            "match": body.get("match"),
        }
        with self.lock:
            self.armed.append(fault)
        return {"armed": len(self.armed)}

    def clear(self):
        with self.lock:
            self.armed = []
        return {"armed": 0}

    def take(self, methods, text=""):
        with self.lock:
            for fault in self.armed:
                if (
                    fault["count"] > 0
                    and (fault["method"] is None or fault["method"] in methods)
                    and (fault["match"] is None or fault["match"] in text)
                ):
                    fault["count"] -= 1
                    self.armed = [f for f in self.armed if f["count"] > 0]
                    return fault
        return None


class Controls:
    """`POST /_control/<name>` with a JSON body (`GET` for the first three), answering JSON;
    HTTP 400 with {"error"} when refused. Pubkeys and signatures are base-58 strings; the
    fixtures land at once in the current slot, as a transaction sent with skipPreflight would.

    launcher            -> {launcher: --tag}
    state               -> {slot, confirmedSlot, finalizedSlot, blockHeight, paused, slotMs,
                            transactions, faucet, mintAuthority}
    stats {reset?}      -> {calls: {method: count}, total}
    faults {kind: timeout|http_429|http_503|unhealthy, count=1, method?, match?, seconds=5,
            retry_after=1, slots_behind?}   the next `count` JSON-RPC requests (of `method`,
                            whose text contains `match`)
                            hang `seconds` then close / answer 429 with Retry-After / answer
                            503 / answer -32005 -> {armed}
    clear_faults        -> {armed: 0}
    drop {count=1 | signature, after_slots=8}   the next `count` sendTransaction calls (or the
                            transaction with that signature, however it arrives) are seen
                            processed, then confirmed, and vanish `after_slots` (1..32) slots
                            after landing; their effects are never applied
    advance {slots=1} / expire_blockhashes (151 slots) -> {slot}
    pause_clock / resume_clock -> {paused, slot};  clock {slot_ms} -> {slotMs}
    keypair {lamports=10 SOL} -> {pubkey, secretKey: the 64 bytes the Solana CLI keeps,
                            signature}; the peer keeps it to sign fixtures
    create_mint {decimals=6, authority?, freeze_authority?, program=spl-token|spl-token-2022}
                        -> {mint, decimals, authority, programId, signature}
    token_account {mint, owner} -> {tokenAccount}   (the associated one, created if missing)
    mint_to {mint, owner, amount} -> {tokenAccount, signature}   (needs a held mint authority)
    freeze {mint, owner} -> {tokenAccount, signature}   freezes the owner's associated account
                            (made if missing); needs a held freeze authority
    transfer {from, mint, to | to_token_account, amount, decimals?, references?, memo?,
              fail?, fee_payer?, drop?, after_slots?}
                        -> {signature, slot, err, amount, source, destination, references,
                            dropped}; TransferChecked from `from`'s associated account, the
                            references as read-only non-signer keys, then a Memo; `fail` asks
                            for more than the source holds; a missing destination associated
                            account is created first, in a transaction of its own
    transfers {from, mint, to | to_token_account, amount=1, count, memo? ("{i}": index),
               references?} -> {signatures, references, failed, elapsedMs, perSecond};
                            one fresh reference key per transfer unless given
    token_balance {account | owner+mint, commitment=confirmed}
                        -> {account, slot, exists, amount, decimals, uiAmount, uiAmountString}
    """

    def __init__(self, chain, faults, stats, tag):
        self.chain = chain
        self.faults = faults
        self.stats = stats
        self.tag = tag

    def handle(self, name, body):
        handler = getattr(self, "c_" + name, None)
        if handler is None:
            raise ControlError(f"no control {name}")
        return handler(body or {})

    # - introspection -

    def c_launcher(self, body):
        return {"launcher": self.tag}

    def c_state(self, body):
        chain = self.chain
        with chain.lock:
            return {
                "slot": chain.slot,
                "confirmedSlot": chain.bound("confirmed"),
                "finalizedSlot": chain.bound("finalized"),
                "blockHeight": chain.slot,
                "paused": chain.paused,
                "slotMs": chain.slot_ms,
                "transactions": chain.tx_count,
                "faucet": str(chain.faucet.pubkey()),
                "mintAuthority": str(chain.mint_authority.pubkey()),
            }

    def c_stats(self, body):
        return self.stats.snapshot(reset=bool(body.get("reset")))

    # - faults -

    def c_faults(self, body):
        return self.faults.arm(body)

    def c_clear_faults(self, body):
        return self.faults.clear()

    def c_drop(self, body):
        chain = self.chain
        after = int(body.get("after_slots", DEFAULT_DROP_AFTER))
        if not 1 <= after <= FINALIZATION_LAG:
            raise ControlError(f"after_slots must be within 1..{FINALIZATION_LAG}")
        with chain.lock:
            if body.get("signature"):
                chain.drop_signatures[str(Signature.from_string(body["signature"]))] = after
            else:
                chain.drop_next += int(body.get("count", 1))
                chain.drop_after = after
            return {"dropNext": chain.drop_next, "dropSignatures": len(chain.drop_signatures)}

    # - clock -

    def c_advance(self, body):
        return {"slot": self.chain.advance(int(body.get("slots", 1)))}

    def c_expire_blockhashes(self, body):
        return {"slot": self.chain.advance(MAX_PROCESSING_AGE + 1)}

    def c_pause_clock(self, body):
        self.chain.paused = True
        return {"paused": True, "slot": self.chain.slot}

    def c_resume_clock(self, body):
        self.chain.paused = False
        return {"paused": False, "slot": self.chain.slot}

    def c_clock(self, body):
        if "slot_ms" in body:
            self.chain.slot_ms = max(1, int(body["slot_ms"]))
        return {"slotMs": self.chain.slot_ms}

    # - fixtures -

    def held(self, pubkey, what):
        keypair = self.chain.keypairs.get(str(pubkey))
        if keypair is None:
            raise ControlError(f"{what} {pubkey} is not a keypair this peer holds")
        return keypair

    def land(self, instructions, signers, payer=None):
        record = fixtures_land(self.chain, instructions, signers, payer)
        if record is None:
            raise ControlError("the transaction could not land (fee payer cannot pay?)")
        return record

    def must_succeed(self, record, what):
        if record.err is not None:
            raise ControlError(f"{what} failed: {json.dumps(record.err)}")
        return record

    def c_keypair(self, body):
        lamports = int(body.get("lamports", 10 * LAMPORTS_PER_SOL))
        keypair = Keypair()
        chain = self.chain
        with chain.lock:
            chain.keypairs[str(keypair.pubkey())] = keypair
            signature = None
            if lamports > 0:
                record = self.must_succeed(self.land(
                    [transfer(TransferParams(
                        from_pubkey=chain.faucet.pubkey(), to_pubkey=keypair.pubkey(),
                        lamports=lamports,
                    ))],
                    [chain.faucet],
                ), "airdrop")
                signature = record.signature
        return {
            "pubkey": str(keypair.pubkey()),
            "secretKey": list(bytes(keypair)),
            "signature": signature,
        }

    def program_of(self, body):
        name = body.get("program", "spl-token")
        for program, program_name in TOKEN_PROGRAMS.items():
            if name in (program_name, str(program)):
                return program
        raise ControlError("program must be spl-token or spl-token-2022")

    def c_create_mint(self, body):
        chain = self.chain
        decimals = int(body.get("decimals", 6))
        program = self.program_of(body)
        authority = Pubkey.from_string(body["authority"]) if body.get("authority") else (
            chain.mint_authority.pubkey()
        )
        freeze = body.get("freeze_authority")
        freeze = Pubkey.from_string(freeze) if freeze else None
        mint = Keypair()
        with chain.lock:
            rent = chain.svm.minimum_balance_for_rent_exemption(MINT_LEN)
            record = self.must_succeed(self.land(
                [
                    create_account(CreateAccountParams(
                        from_pubkey=chain.faucet.pubkey(), to_pubkey=mint.pubkey(),
                        lamports=rent, space=MINT_LEN, owner=program,
                    )),
                    ix_init_mint(mint.pubkey(), decimals, authority, freeze, program),
                ],
                [chain.faucet, mint],
            ), "create_mint")
        return {
            "mint": str(mint.pubkey()),
            "decimals": decimals,
            "authority": str(authority),
            "programId": str(program),
            "signature": record.signature,
        }

    def mint_info(self, mint):
        account = self.chain.svm.get_account(mint)
        info = parse_mint(account)
        if info is None:
            raise ControlError(f"{mint} is not a mint")
        return info, account.owner

    def ensure_ata(self, owner, mint, program):
        chain = self.chain
        ata = ata_of(owner, mint, program)
        if chain.svm.get_account(ata) is None:
            self.must_succeed(self.land(
                [ix_create_ata(chain.faucet.pubkey(), owner, mint, program)], [chain.faucet]
            ), "creating the token account")
        return ata

    def c_token_account(self, body):
        mint = Pubkey.from_string(body["mint"])
        owner = Pubkey.from_string(body["owner"])
        with self.chain.lock:
            _, program = self.mint_info(mint)
            return {"tokenAccount": str(self.ensure_ata(owner, mint, program))}

    def c_mint_to(self, body):
        chain = self.chain
        mint = Pubkey.from_string(body["mint"])
        owner = Pubkey.from_string(body["owner"])
        amount = int(body["amount"])
        with chain.lock:
            info, program = self.mint_info(mint)
            authority = self.held(info["mintAuthority"], "mint authority")
            ata = ata_of(owner, mint, program)
            signers = [chain.faucet]
            if authority.pubkey() != chain.faucet.pubkey():
                signers.append(authority)
            record = self.must_succeed(self.land(
                [
                    ix_create_ata(chain.faucet.pubkey(), owner, mint, program),
                    ix_mint_to(mint, ata, authority.pubkey(), amount, program),
                ],
                signers,
            ), "mint_to")
        return {"tokenAccount": str(ata), "signature": record.signature}

    def c_freeze(self, body):
        chain = self.chain
        mint = Pubkey.from_string(body["mint"])
        owner = Pubkey.from_string(body["owner"])
        with chain.lock:
            info, program = self.mint_info(mint)
            if info["freezeAuthority"] is None:
                raise ControlError(f"{mint} has no freeze authority")
            authority = self.held(info["freezeAuthority"], "freeze authority")
            ata = self.ensure_ata(owner, mint, program)
            signers = [chain.faucet]
            if authority.pubkey() != chain.faucet.pubkey():
                signers.append(authority)
            record = self.must_succeed(self.land(
                [ix_freeze(ata, mint, authority.pubkey(), program)], signers,
            ), "freeze")
        return {"tokenAccount": str(ata), "signature": record.signature}

    def transfer_plan(self, body):
        """What `transfer` and `transfers` share: who pays, from where, to where."""
        mint = Pubkey.from_string(body["mint"])
        info, program = self.mint_info(mint)
        source_owner = self.held(Pubkey.from_string(body["from"]), "from")
        payer = self.held(Pubkey.from_string(body["fee_payer"]), "fee_payer") if body.get(
            "fee_payer") else source_owner
        source = ata_of(source_owner.pubkey(), mint, program)
        if body.get("to_token_account"):
            dest = Pubkey.from_string(body["to_token_account"])
        else:
            dest = self.ensure_ata(Pubkey.from_string(body["to"]), mint, program)
        decimals = int(body["decimals"]) if body.get("decimals") is not None else info["decimals"]
        signers = [payer]
        if payer.pubkey() != source_owner.pubkey():
            signers.append(source_owner)
        return mint, program, source_owner, source, dest, decimals, signers, payer

    def transfer_instructions(self, plan, amount, references, memo):
        mint, program, source_owner, source, dest, decimals, _, _ = plan
        instructions = [ix_transfer_checked(
            source, mint, dest, source_owner.pubkey(), amount, decimals, program, references
        )]
        if memo is not None:
            instructions.append(ix_memo(memo))
        return instructions

    def c_transfer(self, body):
        chain = self.chain
        amount = int(body["amount"])
        references = [Pubkey.from_string(r) for r in body.get("references", [])]
        with chain.lock:
            plan = self.transfer_plan(body)
            if body.get("fail"):
                # Forced failure: ask for more than the source holds (insufficient funds).
                parsed = parse_token_account(chain.svm.get_account(plan[3]))
                balance = parsed[2] if parsed else 0
                amount = max(amount, balance + 1)
            instructions = self.transfer_instructions(plan, amount, references, body.get("memo"))
            payer = plan[7]
            tx = Transaction(
                plan[6], Message(instructions, payer.pubkey()), chain.hash_for(chain.slot)
            )
            signature = str(tx.signatures[0])
            ghost = chain.drop_signatures.pop(signature, None)
            if body.get("drop"):
                ghost = int(body.get("after_slots", DEFAULT_DROP_AFTER))
            record = chain.land(bytes(tx), VersionedTransaction.from_legacy(tx), ghost_slots=ghost)
            if record is None:
                raise ControlError("the transfer could not land (fee payer cannot pay?)")
            return {
                "signature": record.signature,
                "slot": record.slot,
                "err": record.err,
                "amount": amount,
                "source": str(plan[3]),
                "destination": str(plan[4]),
                "references": [str(r) for r in references],
                "dropped": ghost is not None,
            }

    def c_transfers(self, body):
        """Many transfers landed without HTTP per transaction, each with its own reference key
        unless `references` (one per transfer) are given; the lock is let go between chunks so
        that reads go on meanwhile."""
        chain = self.chain
        count = int(body["count"])
        amount = int(body.get("amount", 1))
        memo = body.get("memo")
        given = body.get("references")
        if given is not None and len(given) != count:
            raise ControlError("references must hold one key per transfer")
        signatures, references, failed = [], [], 0
        started = time.perf_counter()
        with chain.lock:
            plan = self.transfer_plan(body)
        index = 0
        while index < count:
            with chain.lock:
                blockhash = chain.hash_for(chain.slot)
                for _ in range(min(200, count - index)):
                    if given is not None:
                        reference = Pubkey.from_string(given[index])
                    else:
                        reference = Pubkey.from_bytes(os.urandom(32))
                    text = memo.replace("{i}", str(index)) if memo is not None else None
                    instructions = self.transfer_instructions(plan, amount, [reference], text)
                    payer = plan[7]
                    tx = Transaction(plan[6], Message(instructions, payer.pubkey()), blockhash)
                    record = chain.land(bytes(tx), VersionedTransaction.from_legacy(tx))
                    if record is None:
                        raise ControlError(f"transfer {index} could not land")
                    failed += record.err is not None
                    signatures.append(record.signature)
                    references.append(str(reference))
                    index += 1
        elapsed = time.perf_counter() - started
        return {
            "signatures": signatures,
            "references": references,
            "failed": failed,
            "elapsedMs": round(elapsed * 1000, 1),
            "perSecond": round(count / elapsed, 1) if elapsed > 0 else None,
        }

    def c_token_balance(self, body):
        chain = self.chain
        commitment = COMMITMENTS.get(body.get("commitment", "confirmed"), "confirmed")
        with chain.lock:
            if body.get("account"):
                account_key = Pubkey.from_string(body["account"])
            else:
                mint = Pubkey.from_string(body["mint"])
                _, program = self.mint_info(mint)
                account_key = ata_of(Pubkey.from_string(body["owner"]), mint, program)
            parsed = parse_token_account(chain.account_at(account_key, commitment))
            out = {"account": str(account_key), "slot": chain.bound(commitment)}
            if parsed is None:
                out.update(exists=False, amount="0")
                return out
            decimals = chain.mint_decimals(parsed[0])
            out.update(exists=True, **ui_token_amount(parsed[2], decimals))
            return out


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = collections.Counter()

    def count(self, method):
        with self.lock:
            self.calls[method] += 1

    def snapshot(self, reset=False):
        with self.lock:
            calls = dict(self.calls)
            if reset:
                self.calls.clear()
        return {"calls": calls, "total": sum(calls.values())}


# --- HTTP -------------------------------------------------------------------------------------


def rpc_answer(rpc, stats, request):
    """One JSON-RPC call, answered as JSON text."""
    if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(
        request.get("method"), str
    ):
        request_id = request.get("id") if isinstance(request, dict) else None
        error = {"code": -32600, "message": "Invalid request"}
        return json.dumps({"jsonrpc": "2.0", "error": error, "id": request_id})
    request_id = request.get("id")
    method = request["method"]
    stats.count(method)
    try:
        result = rpc.call(method, request.get("params"))
    except RpcError as e:
        return json.dumps({"jsonrpc": "2.0", "error": e.to_json(), "id": request_id})
    except Exception as e:  # a bug here must still answer as a node would
        sys.stderr.write(f"solana-peer: {method} failed: {e!r}\n")
        error = {"code": -32603, "message": f"Internal error: {e}"}
        return json.dumps({"jsonrpc": "2.0", "error": error, "id": request_id})
    if isinstance(result, RawJson):
        text = str(result)
    else:
        text = json.dumps(result, separators=(",", ":"))
    return '{"jsonrpc":"2.0","result":' + text + ',"id":' + json.dumps(request_id) + "}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    server_version = "solana-peer"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the
        # second until the client's delayed ACK, some 40 ms per call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def reply(self, status, body, content_type="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self.reply(200, "ok", "text/plain")
        elif path.startswith("/_control/"):
            self.control(path[len("/_control/"):], {})
        else:
            self.reply(405, "Used HTTP Method is not allowed. POST or OPTIONS is required",
                       "text/plain")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        body = self.read_body()
        if path.startswith("/_control/"):
            try:
                parsed = json.loads(body) if body.strip() else {}
            except ValueError:
                self.reply(400, json.dumps({"error": "body is not JSON"}))
                return
            self.control(path[len("/_control/"):], parsed)
        elif path == "/":
            self.rpc(body)
        else:
            self.reply(404, "Not Found", "text/plain")

    def control(self, name, body):
        server = self.server
        try:
            answer = server.controls.handle(name, body)
        except (ControlError, KeyError, ValueError, TypeError) as e:
            self.reply(400, json.dumps({"error": f"{type(e).__name__}: {e}"}))
            return
        except Exception as e:  # a bug here must not leave the caller without an answer
            sys.stderr.write(f"solana-peer: control {name} failed: {e!r}\n")
            self.reply(500, json.dumps({"error": f"{type(e).__name__}: {e}"}))
            return
        self.reply(200, json.dumps(answer))

    def rpc(self, body):
        server = self.server
        try:
            request = json.loads(body)
        except ValueError:
            error = {"code": -32700, "message": "Parse error"}
            self.reply(200, json.dumps({"jsonrpc": "2.0", "error": error, "id": None}))
            return
        batch = isinstance(request, list)
        calls = request if batch else [request]
        methods = {c.get("method") for c in calls if isinstance(c, dict)}
        fault = server.faults.take(methods, body if isinstance(body, str) else body.decode("utf-8", "replace"))
        if fault is not None and self.fault(fault, calls):
            return
        if batch and not calls:
            error = {"code": -32600, "message": "Invalid request"}
            self.reply(200, json.dumps({"jsonrpc": "2.0", "error": error, "id": None}))
            return
        answers = [rpc_answer(server.rpc_methods, server.stats, c) for c in calls]
        self.reply(200, "[" + ",".join(answers) + "]" if batch else answers[0])

    def fault(self, fault, calls):
        """Answers as the armed fault says; False when the call is to be served after all."""
        kind = fault["kind"]
        if kind == "timeout":
            time.sleep(fault["seconds"])
            self.close_connection = True  # no answer at all
            return True
        if kind == "http_429":
            body = json.dumps({
                "jsonrpc": "2.0",
                "error": {"code": 429, "message": "Too many requests for a specific RPC call"},
                "id": calls[0].get("id") if calls and isinstance(calls[0], dict) else None,
            })
            self.reply(429, body, headers=[("Retry-After", str(fault["retry_after"]))])
            return True
        if kind == "http_503":
            self.reply(503, "Service Unavailable", "text/plain")
            return True
        behind = fault["slots_behind"]
        error = {
            "code": -32005,
            "message": f"Node is behind by {behind} slots" if behind else "Node is unhealthy",
            "data": {"numSlotsBehind": behind},
        }
        answers = [
            json.dumps({"jsonrpc": "2.0", "error": error,
                        "id": c.get("id") if isinstance(c, dict) else None})
            for c in calls
        ]
        self.reply(200, "[" + ",".join(answers) + "]" if len(calls) > 1 else answers[0])
        return True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tag", default="")
    parser.add_argument("--pidfile", help="where to write this process's id")
    parser.add_argument("--slot-ms", type=int, default=50, help="milliseconds per slot")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    chain = Chain(slot_ms=args.slot_ms)
    server = Server(("127.0.0.1", args.port), Handler)
    server.verbose = args.verbose
    server.stats = Stats()
    server.faults = Faults()
    server.rpc_methods = Rpc(chain)
    server.controls = Controls(chain, server.faults, server.stats, args.tag)
    sys.stderr.write(f"solana-peer: listening on http://127.0.0.1:{args.port} (tag {args.tag})\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

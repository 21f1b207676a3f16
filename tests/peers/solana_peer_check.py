"""Checks tests/peers/solana_peer.py from the outside, as a client of its HTTP surface.

    target/solana-venv/bin/python tests/peers/solana_peer_check.py [--transfers 10000]

Starts the peer on a free loopback port and talks to it with plain JSON-RPC over urllib:
commitment levels of a transfer carrying a Solana Pay reference key, token balances in
getTransaction, failed and dropped transactions, blockhash expiry, preflight errors, the fault
controls, then times bulk transfers and getTransaction throughput. Transactions are built and
signed with solders (the peer's own dependency), so run it with the peer's virtualenv.
Ends with a `N passed, N failed` line; exits non-zero when a check failed.
"""

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from solders.hash import Hash  # noqa: E402
from solders.keypair import Keypair  # noqa: E402
from solders.message import Message, MessageV0  # noqa: E402
from solders.pubkey import Pubkey  # noqa: E402
from solders.transaction import Transaction, VersionedTransaction  # noqa: E402

import solana_peer as peer  # noqa: E402

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "solana_peer.py")


class RpcFailure(Exception):
    def __init__(self, error):
        super().__init__(json.dumps(error))
        self.error = error


class Client:
    def __init__(self, url):
        self.url = url

    def rpc(self, method, params=None, timeout=10):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        request = urllib.request.Request(
            self.url, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
        if "error" in answer:
            raise RpcFailure(answer["error"])
        return answer["result"]

    def control(self, name, body=None):
        request = urllib.request.Request(
            f"{self.url}_control/{name}", json.dumps(body or {}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.load(response)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name} {detail}")

    def rpc_error(self, name, call, code, message_part=""):
        try:
            result = call()
        except RpcFailure as e:
            ok = e.error.get("code") == code and message_part in e.error.get("message", "")
            self.check(name, ok, json.dumps(e.error)[:300])
            return e.error
        self.check(name, False, f"answered {json.dumps(result)[:200]}")
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_peer(port, log):
    process = subprocess.Popen(
        [sys.executable, PEER, "--port", str(port), "--tag", "check"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/_control/launcher", timeout=1
            ) as response:
                if json.load(response).get("launcher") == "check":
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the peer did not start")


def encode(tx, encoding="base64"):
    raw = bytes(tx)
    return base64.b64encode(raw).decode() if encoding == "base64" else peer.b58encode(raw)


class World:
    """The fixtures the checks share: a payer with tokens, a merchant, a mint."""

    def __init__(self, client):
        self.client = client
        payer = client.control("keypair", {"lamports": 100 * peer.LAMPORTS_PER_SOL})
        self.payer = Keypair.from_bytes(bytes(payer["secretKey"]))
        self.merchant = Pubkey.from_string(client.control("keypair", {"lamports": 0})["pubkey"])
        self.mint = Pubkey.from_string(client.control("create_mint", {"decimals": 6})["mint"])
        client.control("mint_to", {
            "mint": str(self.mint), "owner": str(self.payer.pubkey()), "amount": 10**12,
        })
        self.source = peer.ata_of(self.payer.pubkey(), self.mint)
        self.dest = Pubkey.from_string(client.control("token_account", {
            "mint": str(self.mint), "owner": str(self.merchant),
        })["tokenAccount"])
        client.control("advance", {"slots": 40})  # the fixtures are finalized

    def blockhash(self, commitment="finalized"):
        answer = self.client.rpc("getLatestBlockhash", [{"commitment": commitment}])
        return Hash.from_string(answer["value"]["blockhash"])

    def transfer_tx(self, amount, reference=None, memo=None, blockhash=None, v0=False):
        references = [reference] if reference is not None else []
        instructions = [peer.ix_transfer_checked(
            self.source, self.mint, self.dest, self.payer.pubkey(), amount, 6,
            peer.TOKEN_PROGRAM, references,
        )]
        if memo is not None:
            instructions.append(peer.ix_memo(memo))
        blockhash = blockhash or self.blockhash()
        if v0:
            message = MessageV0.try_compile(self.payer.pubkey(), instructions, [], blockhash)
            return VersionedTransaction(message, [self.payer])
        return Transaction([self.payer], Message(instructions, self.payer.pubkey()), blockhash)

    def send(self, tx, encoding="base64", **config):
        config.setdefault("encoding", encoding)
        return self.client.rpc("sendTransaction", [encode(tx, encoding), config])


def status(client, signature, history=False):
    answer = client.rpc(
        "getSignatureStatuses", [[signature], {"searchTransactionHistory": history}]
    )
    return answer["value"][0]


def signatures(client, address, commitment, **config):
    config["commitment"] = commitment
    return [e["signature"] for e in client.rpc("getSignaturesForAddress", [str(address), config])]


def balance(client, account, commitment):
    answer = client.rpc("getTokenAccountBalance", [str(account), {"commitment": commitment}])
    return int(answer["value"]["amount"])


def check_commitments(c, client, world):
    reference = Keypair().pubkey()
    before_confirmed = balance(client, world.dest, "confirmed")
    before_finalized = balance(client, world.dest, "finalized")
    signature = world.send(world.transfer_tx(1_250_000, reference, memo="invoice-7"))
    first = status(client, signature)
    c.check("sendTransaction lands as processed", first is not None
            and first["confirmationStatus"] == "processed" and first["confirmations"] == 0,
            json.dumps(first))
    c.check("a processed transaction is not listed at confirmed",
            signatures(client, reference, "confirmed") == [])
    c.rpc_error("getSignaturesForAddress refuses processed",
                lambda: signatures(client, reference, "processed"), -32602,
                "Method does not support commitment below `confirmed`")
    client.control("advance", {"slots": 1})
    c.check("confirmed one slot later",
            status(client, signature)["confirmationStatus"] == "confirmed")
    c.check("listed by its reference key at confirmed",
            signatures(client, reference, "confirmed") == [signature])
    c.check("not listed at finalized", signatures(client, reference, "finalized") == [])
    c.check("getTransaction at finalized is null", client.rpc(
        "getTransaction", [signature, {"commitment": "finalized", "encoding": "json"}]) is None)
    c.check("token balance moved at confirmed",
            balance(client, world.dest, "confirmed") == before_confirmed + 1_250_000)
    c.check("token balance unmoved at finalized",
            balance(client, world.dest, "finalized") == before_finalized)
    client.control("advance", {"slots": 31})
    c.check("still not finalized 32 slots after landing",
            signatures(client, reference, "finalized") == []
            and status(client, signature)["confirmationStatus"] == "confirmed")
    client.control("advance", {"slots": 1})
    entries = client.rpc("getSignaturesForAddress", [str(reference), {"commitment": "finalized"}])
    c.check("finalized 33 slots after landing", [e["signature"] for e in entries] == [signature]
            and entries[0]["confirmationStatus"] == "finalized", json.dumps(entries))
    c.check("memo as the node formats it", entries and entries[0]["memo"] == "[9] invoice-7",
            json.dumps(entries))
    final = status(client, signature)
    c.check("finalized status has no confirmation count",
            final["confirmationStatus"] == "finalized" and final["confirmations"] is None)
    c.check("token balance moved at finalized",
            balance(client, world.dest, "finalized") == before_finalized + 1_250_000)

    answer = client.rpc("getTransaction", [signature, {
        "encoding": "json", "commitment": "finalized", "maxSupportedTransactionVersion": 0,
    }])
    meta = answer["meta"]
    keys = answer["transaction"]["message"]["accountKeys"]

    def amounts(balances):
        return {keys[b["accountIndex"]]: int(b["uiTokenAmount"]["amount"]) for b in balances}

    pre, post = amounts(meta["preTokenBalances"]), amounts(meta["postTokenBalances"])
    source, dest = str(world.source), str(world.dest)
    c.check("getTransaction token balances move by the amount",
            pre[source] - post[source] == 1_250_000 and post[dest] - pre[dest] == 1_250_000,
            json.dumps([pre, post]))
    c.check("getTransaction meta fields", meta["err"] is None and meta["status"] == {"Ok": None}
            and meta["fee"] == 5000 and meta["preBalances"][0] - meta["postBalances"][0] == 5000
            and str(reference) in keys and answer["version"] == "legacy"
            and answer["slot"] > 0 and isinstance(answer["blockTime"], int))
    c.check("token balance entries carry owner and program", all(
        set(b) == {"accountIndex", "mint", "uiTokenAmount", "owner", "programId"}
        and set(b["uiTokenAmount"]) == {"amount", "decimals", "uiAmount", "uiAmountString"}
        for b in meta["preTokenBalances"] + meta["postTokenBalances"]))
    raw = client.rpc("getTransaction", [signature, {"encoding": "base64"}])
    decoded = VersionedTransaction.from_bytes(base64.b64decode(raw["transaction"][0]))
    c.check("getTransaction base64 decodes to the transaction",
            str(decoded.signatures[0]) == signature and raw["transaction"][1] == "base64"
            and "version" not in raw)
    c.rpc_error("AlreadyProcessed on a resend", lambda: world.send(
        VersionedTransaction.from_bytes(base64.b64decode(raw["transaction"][0]))),
        -32002, "This transaction has already been processed")
    return signature


def check_failures(c, client, world):
    reference = Keypair().pubkey()
    too_much = 10**15  # more than the source holds
    error = c.rpc_error("preflight reports the program error", lambda: world.send(
        world.transfer_tx(too_much, reference)), -32002,
        "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1")
    c.check("preflight error data is a simulation result", error is not None
            and error["data"]["err"] == {"InstructionError": [0, {"Custom": 1}]}
            and any("insufficient funds" in line for line in error["data"]["logs"]))
    lamports = client.rpc("getBalance", [str(world.payer.pubkey()), {"commitment": "processed"}])
    signature = world.send(world.transfer_tx(too_much, reference), skipPreflight=True)
    st = status(client, signature)
    c.check("skipPreflight: the failed transaction lands with its err",
            st and st["err"] == {"InstructionError": [0, {"Custom": 1}]}
            and st["status"] == {"Err": {"InstructionError": [0, {"Custom": 1}]}}, json.dumps(st))
    after = client.rpc("getBalance", [str(world.payer.pubkey()), {"commitment": "processed"}])
    c.check("the failed transaction paid its fee", lamports["value"] - after["value"] == 5000)
    client.control("advance", {"slots": 1})
    entries = client.rpc("getSignaturesForAddress", [str(reference), {"commitment": "confirmed"}])
    c.check("the failed transaction is listed with its err", len(entries) == 1
            and entries[0]["err"] == {"InstructionError": [0, {"Custom": 1}]}, json.dumps(entries))

    blockhash = world.blockhash("processed")
    client.control("advance", {"slots": 2})
    c.rpc_error("a blockhash newer than the preflight bank is not found", lambda: world.send(
        world.transfer_tx(1, Keypair().pubkey(), blockhash=blockhash),
        preflightCommitment="finalized"), -32002, "Blockhash not found")
    old = world.blockhash()
    client.control("expire_blockhashes")
    c.check("isBlockhashValid is false once expired", client.rpc(
        "isBlockhashValid", [str(old), {"commitment": "processed"}])["value"] is False)
    late = world.transfer_tx(1, Keypair().pubkey(), blockhash=old)
    error = c.rpc_error("an expired blockhash fails preflight",
                        lambda: world.send(late), -32002, "Blockhash not found")
    c.check("BlockhashNotFound data",
            error is not None and error["data"]["err"] == "BlockhashNotFound")
    signature = world.send(late, skipPreflight=True)
    client.control("advance", {"slots": 40})
    c.check("skipPreflight with an expired blockhash: dropped, never seen",
            status(client, signature, history=True) is None)


def check_drop(c, client, world):
    reference = Keypair().pubkey()
    client.control("drop", {"count": 1, "after_slots": 5})
    before = balance(client, world.dest, "processed")
    signature = world.send(world.transfer_tx(777, reference), preflightCommitment="processed")
    client.control("advance", {"slots": 1})
    st = status(client, signature)
    c.check("a dropped transaction is first seen confirmed",
            st and st["confirmationStatus"] == "confirmed", json.dumps(st))
    c.check("and listed at confirmed", signatures(client, reference, "confirmed") == [signature])
    c.check("its effects are never applied", balance(client, world.dest, "processed") == before)
    client.control("advance", {"slots": 5})
    c.check("then it disappears", status(client, signature, history=True) is None
            and signatures(client, reference, "confirmed") == []
            and client.rpc("getTransaction", [signature, {"commitment": "confirmed"}]) is None)
    client.control("advance", {"slots": 40})
    c.check("and never finalizes", status(client, signature, history=True) is None
            and signatures(client, reference, "finalized") == [])

    reference = Keypair().pubkey()
    tx = world.transfer_tx(778, reference)
    client.control("drop", {"signature": str(tx.signatures[0]), "after_slots": 3})
    signature = world.send(tx, skipPreflight=True)
    client.control("advance", {"slots": 1})
    c.check("a transaction dropped by signature is confirmed first",
            status(client, signature)["confirmationStatus"] == "confirmed")
    client.control("advance", {"slots": 3})
    c.check("then vanishes", status(client, signature, history=True) is None)
    world.send(tx, skipPreflight=True)
    c.check("sent again after the drop, it lands",
            status(client, signature)["confirmationStatus"] == "processed"
            and balance(client, world.dest, "processed") == before + 778)


def check_faults(c, client, world):
    client.control("faults", {"kind": "timeout", "count": 1, "seconds": 1.5})
    started = time.perf_counter()
    try:
        client.rpc("getSlot", timeout=0.5)
        c.check("timeout fault", False, "answered")
    except (socket.timeout, TimeoutError, urllib.error.URLError):
        c.check("timeout fault", time.perf_counter() - started < 1.4)
    c.check("the call after a timeout is served", isinstance(client.rpc("getSlot"), int))

    client.control("faults", {"kind": "http_429", "count": 1, "retry_after": 2})
    try:
        client.rpc("getSlot")
        c.check("http_429 fault", False, "answered")
    except urllib.error.HTTPError as e:
        c.check("http_429 fault", e.code == 429 and e.headers.get("Retry-After") == "2")
    client.control("faults", {"kind": "http_503", "count": 1})
    try:
        client.rpc("getSlot")
        c.check("http_503 fault", False, "answered")
    except urllib.error.HTTPError as e:
        c.check("http_503 fault", e.code == 503)
    client.control("faults", {"kind": "unhealthy", "count": 1, "slots_behind": 42})
    error = c.rpc_error("unhealthy fault", lambda: client.rpc("getHealth"), -32005,
                        "Node is behind by 42 slots")
    c.check("unhealthy data", error is not None and error.get("data") == {"numSlotsBehind": 42})
    client.control("faults", {"kind": "http_503", "count": 2, "method": "getBalance"})
    c.check("a method's fault leaves other methods alone", isinstance(client.rpc("getSlot"), int))
    hits = 0
    for _ in range(3):
        try:
            client.rpc("getBalance", [str(world.payer.pubkey())])
        except urllib.error.HTTPError:
            hits += 1
    c.check("a method's fault hits that method count times", hits == 2)


def check_params(c, client, world):
    address = str(world.payer.pubkey())
    c.rpc_error("limit above 1000", lambda: client.rpc(
        "getSignaturesForAddress", [address, {"limit": 1001}]), -32602, "Invalid limit; max 1000")
    c.rpc_error("bad pubkey", lambda: client.rpc("getBalance", ["nope"]), -32602, "Invalid param")
    c.rpc_error("getTransaction refuses processed", lambda: client.rpc(
        "getTransaction", ["1" * 64, {"commitment": "processed"}]), -32602, "commitment")
    c.rpc_error("unknown method", lambda: client.rpc("getNothing"), -32601, "Method not found")
    c.rpc_error("undecodable transaction", lambda: client.rpc(
        "sendTransaction", ["AAAA", {"encoding": "base64"}]), -32602)
    request = urllib.request.Request(client.url, json.dumps([
        {"jsonrpc": "2.0", "id": 1, "method": "getSlot"},
        {"jsonrpc": "2.0", "id": 2, "method": "getHealth"},
    ]).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        answers = json.load(response)
    c.check("batch requests", [a["id"] for a in answers] == [1, 2] and answers[1]["result"] == "ok")
    # base58 and version 0
    reference = Keypair().pubkey()
    signature = world.send(world.transfer_tx(5, reference), encoding="base58")
    c.check("sendTransaction base58", status(client, signature) is not None)
    signature = world.send(world.transfer_tx(6, reference, v0=True))
    client.control("advance", {"slots": 1})
    c.rpc_error("version 0 needs maxSupportedTransactionVersion", lambda: client.rpc(
        "getTransaction", [signature, {"commitment": "confirmed"}]), -32015)
    answer = client.rpc("getTransaction", [signature, {
        "commitment": "confirmed", "maxSupportedTransactionVersion": 0}])
    c.check("version 0 answered", answer["version"] == 0
            and answer["transaction"]["message"]["addressTableLookups"] == []
            and answer["meta"]["loadedAddresses"] == {"writable": [], "readonly": []})
    account = client.rpc("getAccountInfo", [str(world.dest), {
        "encoding": "base64", "commitment": "confirmed"}])["value"]
    c.check("getAccountInfo base64", account["owner"] == str(peer.TOKEN_PROGRAM)
            and len(base64.b64decode(account["data"][0])) == 165 and account["space"] == 165)
    fee = client.rpc("getFeeForMessage", [base64.b64encode(bytes(
        world.transfer_tx(1, reference).message)).decode(), {"commitment": "finalized"}])
    c.check("getFeeForMessage", fee["value"] == 5000)


def check_bulk(c, client, world, count):
    started = time.perf_counter()
    answer = client.control("transfers", {
        "from": str(world.payer.pubkey()), "mint": str(world.mint), "to": str(world.merchant),
        "amount": 1000, "count": count, "memo": "deposit-{i}",
    })
    elapsed = time.perf_counter() - started
    c.check(f"{count} bulk transfers", len(answer["signatures"]) == count and answer["failed"] == 0)
    print(f"time  {count} transfers: {elapsed:.2f} s over HTTP "
          f"({answer['elapsedMs'] / 1000:.2f} s inside the peer, {answer['perSecond']} per s)")
    client.control("advance", {"slots": 1})
    reference = answer["references"][count // 2]
    c.check("a bulk transfer is found by its reference",
            signatures(client, reference, "confirmed") == [answer["signatures"][count // 2]])
    started = time.perf_counter()
    seen, before = [], None
    while True:
        config = {"limit": 1000}
        if before:
            config["before"] = before
        page = signatures(client, world.dest, "confirmed", **config)
        if not page:
            break
        seen += page
        before = page[-1]
    elapsed = time.perf_counter() - started
    bulk = set(answer["signatures"])
    c.check("paging `before` walks every transfer, newest first",
            [s for s in seen if s in bulk] == list(reversed(answer["signatures"])))
    print(f"time  paging {len(seen)} signatures by 1000: {elapsed:.2f} s")
    return answer["signatures"]


def throughput(url, signatures, threads, seconds=3.0):
    """getTransaction calls per second over keep-alive connections (as a pooled client)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def worker(n):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        i = n
        while time.perf_counter() < stop:
            body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "getTransaction", "params": [
                signatures[i % len(signatures)],
                {"encoding": "json", "commitment": "confirmed",
                 "maxSupportedTransactionVersion": 0},
            ]})
            connection.request("POST", "/", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert answer["result"]["meta"] is not None
            counts[n] += 1
            i += threads
        connection.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=10_000)
    args = parser.parse_args()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="solana-peer-", suffix=".log", delete=False)
    process = start_peer(port, log)
    client = Client(f"http://127.0.0.1:{port}/")
    c = Checks()
    try:
        c.check("launcher answers its tag", client.control("launcher") == {"launcher": "check"})
        client.control("pause_clock")
        world = World(client)
        check_commitments(c, client, world)
        check_failures(c, client, world)
        check_drop(c, client, world)
        check_faults(c, client, world)
        check_params(c, client, world)
        bulk = check_bulk(c, client, world, args.transfers)
        stats = client.control("stats")
        c.check("stats count calls per method", stats["calls"].get("getTransaction", 0) >= 5)
        for threads in (1, 8):
            rate = throughput(client.url, bulk, threads)
            print(f"time  getTransaction, {threads} client thread(s): {rate:.0f} calls/s")
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    if c.failed:
        print(f"peer log: {log.name}")
    print(f"{c.passed} passed, {c.failed} failed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()

"""Run in the lab's slixmpp client container (python3 -): contacts for the screenshot.
alice@A subscribes to bob on each other server (both ways, slixmpp approves by itself),
then each bob stays online with a status and, after WAIT seconds, says hello to alice.
Usage: partners.py ALICE_JID ALICE_PASSWORD BOB_JID,... BOB_PASSWORD WAIT STAY"""
import asyncio
import sys

sys.path.insert(0, "/opt/xmpp-lab")
from slixmpp_client import lab_client_class  # noqa: E402 (trusts the lab CA only)

alice_jid, alice_password, bobs, bob_password, wait, stay = sys.argv[1:7]
bobs = bobs.split(",")
Client = lab_client_class("/etc/xmpp-lab/ca.pem")
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)


async def online(jid, password, status=None):
    client = Client(jid, password)
    started = loop.create_future()
    client.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    client.connect()
    await asyncio.wait_for(started, 30)
    await client.get_roster()
    client.send_presence(pstatus=status)
    client.add_event_handler("message", lambda m: print(f"{jid} got from {m['from']}: {m['body']}", flush=True))
    return client


async def main():
    clients = [await online(bob, bob_password, f"on {bob.split('@')[1]}") for bob in bobs]
    alice = await online(alice_jid, alice_password)
    for bob in bobs:
        alice.update_roster(bob, name=f"bob ({bob.split('@')[1]})", subscription="none")
        alice.send_presence(pto=bob, ptype="subscribe")
    await asyncio.sleep(5)
    print({bob: alice.client_roster[bob]["subscription"] for bob in bobs}, flush=True)
    alice.disconnect()
    await asyncio.sleep(float(wait))
    for client in clients:
        client.send_message(mto=alice_jid, mbody=f"Hello from {client.boundjid.host}!", mtype="chat")
    print("said hello", flush=True)
    await asyncio.sleep(float(stay))

loop.run_until_complete(main())

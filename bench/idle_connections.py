"""Open N mutual-TLS keep-alive connections to the gateway, send one query on
each, and hold them open for a while (SPEC §5: RSS with 1,000 open
connections). Usage: idle_connections.py CERTS_DIR PORT N SECONDS"""
import ssl, socket, sys, time
certs = sys.argv[1]; port = int(sys.argv[2]); n = int(sys.argv[3])
ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
ctx.load_cert_chain(f"{certs}/bank.pem", f"{certs}/bank-key.pem")
body = b'{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["enterprise_name"]}'
req = b"POST /v1/query HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
conns = []
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(req)          # one request each, then keep the connection open
    s.recv(65536)
    conns.append(s)
print("open", len(conns), flush=True)
time.sleep(float(sys.argv[4]))

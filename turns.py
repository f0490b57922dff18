import socket,sys,time,re,os,signal
port=int(sys.argv[1]); pid=int(sys.argv[2])
socks=[]
for i in range(4):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096); s.connect(('127.0.0.1',port))
    s.sendall(b'GET /v1/rows?start=0&stop=20000&format=bin HTTP/1.1\r\nHost: x\r\n\r\n'); socks.append(s)
time.sleep(0.5)
os.kill(pid, signal.SIGTERM)
time.sleep(0.3)
for s in socks:
    s.settimeout(10); d=b''
    try:
        while True:
            x=s.recv(1<<20)
            if not x: break
            d+=x
            if len(d) >= 5120000+200 and b'\r\n\r\n' in d:
                i=d.find(b'\r\n\r\n'); cl=int(re.search(rb'Content-Length: (\d+)',d[:i]).group(1))
                if len(d)-i-4>=cl: break
    except Exception as e: d+=b'<exc %r>'%e
    print(d[:15], len(d))

import json,sys,statistics as st
def q(xs,p):
    xs=sorted(xs); 
    return xs[int(p*(len(xs)-1))] if xs else float('nan')
for name in sys.argv[1:]:
    d=json.load(open(name))
    print("==",name, "rtts",d['rtts'])
    for i,n in enumerate(d['nodes']): print(" node",i+1,json.dumps(n))
    for node in range(len(d['rtts'])):
        ws=[w for w in d['writes'] if w['node']==node]
        if not ws: continue
        lat=[w['cEnd']-w['cStart'] for w in ws]
        print(f" node {node+1}: {len(ws)} writes, client p50 {q(lat,.5):.1f} mean {st.mean(lat):.1f}")
        inq=[w['abs']-w['cStart'] for w in ws]; out=[w['cEnd']-w['abs']-w['end'] for w in ws]
        print(f"   client->handler p50 {q(inq,.5):.1f} mean {st.mean(inq):.1f}; handler end->client p50 {q(out,.5):.1f} mean {st.mean(out):.1f}; handler p50 {q([w['end'] for w in ws],.5):.1f} mean {st.mean([w['end'] for w in ws]):.1f}")
        for role,seq in [("leader",["arrive","queued","signal","writable","turn","turnHanded","stmtStart","stmt","append","appendSent","appendReply","localApplied","barrier","appendDone","end"]),("follower",["arrive","queued","signal","stmtStart","stmt","ran","end"])]:
            rs=[w for w in ws if ('writable' in w)==(role=="leader")]
            if not rs: continue
            print(f"   {role}: {len(rs)} ({len(rs)/len(ws):.0%}), group size mean {st.mean([w.get('group',0) for w in rs]) if role=='leader' else 0:.2f}; client p50 {q([w['cEnd']-w['cStart'] for w in rs],.5):.1f} mean {st.mean([w['cEnd']-w['cStart'] for w in rs]):.1f}")
            line=[]
            for a,b in zip(seq,seq[1:]):
                pass
            # step = from previous present mark
            steps={}
            for w in rs:
                prev='arrive'
                for k in seq[1:]:
                    if k in w:
                        steps.setdefault(f"{prev}->{k}",[]).append(w[k]-w[prev]); prev=k
            for k,v in steps.items():
                print(f"     {k:28s} n={len(v):4d} p50 {q(v,.5):7.1f} mean {st.mean(v):7.1f} p90 {q(v,.9):7.1f}")
print("== ack path (leader writes with seq)")
for name in sys.argv[1:]:
    d=json.load(open(name))
    for node in range(len(d['rtts'])):
        other=1-node
        idx={}
        for f in d['nodes'][other].get('follow',[]):
            for s in f['seqs']: idx[s]=f
        steps={}
        for w in d['writes']:
            if w['node']!=node or 'seq' not in w or 'barrier' not in w: continue
            f=idx.get(w['seq'])
            if not f or 'renew' not in f: steps.setdefault('unmatched',[]).append(0); continue
            A=w['abs']
            pts=[('appendSent',A+w['appendSent']),('appendReply',A+w['appendReply']),('B read',f['t'][0]),('B delivered',f['t'][1]),('B applied',f['t'][2]),('B renew sent',f['renew']),('A barrier',A+w['barrier'])]
            for (a,x),(b,y) in zip(pts,pts[1:]): steps.setdefault(f"{a}->{b}",[]).append(y-x)
        print(name, "writer node",node+1, "rtts",d['rtts'])
        for k,v in steps.items(): print(f"   {k:30s} n={len(v):4d} p50 {q(v,.5):7.1f} mean {st.mean(v):7.1f} p90 {q(v,.9):7.1f}")
print("== reads")
for name in sys.argv[1:]:
    d=json.load(open(name))
    print(name, "driver loop", d.get('driverLoop'))
    for i,rs in enumerate(d.get('reads',[])):
        h=[r[0] for r in rs if r[1]]; m=[r[0] for r in rs if not r[1]]; a=[r[0] for r in rs]
        slow=[r for r in rs if r[0]>=q(a,.99)]
        print(f"  node {i+1}: reads {len(a)} p50 {q(a,.5):.1f} p99 {q(a,.99):.1f}; hits {len(h)} p50 {q(h,.5):.1f} p99 {q(h,.99):.1f}; misses {len(m)} p50 {q(m,.5):.1f} p90 {q(m,.9):.1f} p99 {q(m,.99):.1f}; of reads >= p99: {sum(1 for r in slow if r[1])} hits / {len(slow)}")

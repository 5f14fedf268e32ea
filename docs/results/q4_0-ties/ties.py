# Q4_0 on Gemma-3-270M's layer-0 tensors: how many elements sit exactly on a rounding tie, and
# what llama.cpp's rounding (x/d + 8.5 truncated: ties up) does vs nearest-by-error.
import json, struct, array, math
import sys
P=sys.argv[1] if len(sys.argv) > 1 else ".cache/hf/gemma3-270m/model.safetensors"
f=open(P,'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); base=8+n
def f16(x):  # round to f16
    return struct.unpack('<e', struct.pack('<e', x))[0]
def tensor(name):
    v=h[name]; a,b=v['data_offsets']; f.seek(base+a); arr=array.array('f'); arr.frombytes(f.read(b-a)); return arr, v['shape']
for name in ['model.layers.0.mlp.gate_proj.weight','model.layers.0.self_attn.q_proj.weight','model.layers.0.mlp.down_proj.weight','model.layers.0.self_attn.o_proj.weight']:
    w, shape = tensor(name)
    cols=shape[1]; ties=0; tot=0; se_g=0.0; se_n=0.0; bias_g=0.0; bias_n=0.0; xs=0.0
    for r in range(0, shape[0], 4):  # every 4th row
        row=w[r*cols:(r+1)*cols]
        for g0 in range(0, cols, 32):
            x=row[g0:g0+32]
            m=max(x, key=abs); d=m/-8.0; dq=f16(d)
            if d==0: continue
            idd=1.0/d
            for v in x:
                t=v*idd+8.0
                frac=t-math.floor(t)
                if abs(frac-0.5)<1e-6: ties+=1
                qg=min(15,int(v*idd+8.5))
                # nearest by decode error (ties: the lower code, as a strict < comparison keeps the first)
                c=max(0,min(15,round(v/dq+8)))
                best=None
                for q in (c-1,c,c+1):
                    if 0<=q<=15:
                        e=abs((q-8)*dq-v)
                        if best is None or e<best[0]: best=(e,q)
                qn=best[1]
                eg=(qg-8)*dq-v; en=(qn-8)*dq-v
                se_g+=eg*eg; se_n+=en*en; bias_g+=eg; bias_n+=en; xs+=v*v; tot+=1
    print(f"{name.split('layers.0.')[1]:28s} ties {100*ties/tot:5.1f}% | rel MSE ggml {se_g/xs:.4e} nearest {se_n/xs:.4e} | mean error / rms: ggml {bias_g/tot/math.sqrt(xs/tot):+.4f} nearest {bias_n/tot/math.sqrt(xs/tot):+.4f}")

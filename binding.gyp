# node-gyp build of the CPU backend from the same sources as CMakeLists.txt (CI builds both so neither rots):
# every .cc under native/{core,cpu,model,pipeline} and native/runtime/cpu, native/runtime/*.cc and the N-API
# addon native/addon/*.cc -> build/Release/pixelllm.node. No TensorRT here (cmake-js builds that).
# Needs libopenblas-dev and nlohmann-json3-dev (scripts/apt-packages.txt).
{
  "targets": [
    {
      "target_name": "pixelllm",
      "sources": [
        "<!@(node -e \"const fs=require('fs'),p=require('path');const out=[];const walk=(d,deep)=>{if(!fs.existsSync(d))return;for(const e of fs.readdirSync(d,{withFileTypes:true})){const f=p.posix.join(d,e.name);if(e.isDirectory()){if(deep)walk(f,deep);}else if(f.endsWith('.cc'))out.push(f);}};[['native/core',1],['native/cpu',1],['native/model',1],['native/pipeline',1],['native/runtime',0],['native/runtime/cpu',1],['native/addon',0]].forEach(([d,deep])=>walk(d,deep));console.log(out.sort().join(' '));\")"
      ],
      "include_dirs": [
        "native",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-fno-math-errno", "-ffp-contract=off"],
      "libraries": ["-lopenblas", "-lpthread"],
      "conditions": [
        ["target_arch=='x64'", {"cflags_cc": ["-march=x86-64-v2"]}]
      ]
    }
  ]
}

"""Video datasets: list files, clip samplers, paired frame/motion transforms, one dataset core,
the synthetic motion benchmark and H.264 transcoding.

Heavy imports (torch, av) live in the submodules that need them, so `import mgm.data` stays cheap.
"""

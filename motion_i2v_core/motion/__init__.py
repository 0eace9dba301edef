"""Motion as the artist gives it and sees it: hints (tracks + brush), trajectories, the stage-1
control, image fitting, flow colours, previews and flow files."""
